"""Refit the latent population of shipped PK-VAEs without retraining them.

    python -m vae_simulator.vae.refit --drug all

For each drug, loads the shipped weights (also those saved before the latent population was part
of the model), regenerates the training population recorded in the manifest (same seed, size and
horizon; cached in ``data/``), fits :class:`~vae_simulator.vae.model.LatentPopulation` on it and
writes the weights and manifest back.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from safetensors.torch import load_file

from vae_simulator.groundtruth import DRUGS
from vae_simulator.vae.io import read_manifest, save_model, shipped_weights_dir
from vae_simulator.vae.latent import fit_latent_population
from vae_simulator.vae.model import PKVAE, VAEConfig
from vae_simulator.vae.train import load_or_generate


def refit(drug: str, data_dir: Path) -> dict:
    path = shipped_weights_dir() / f"{drug}.json"
    manifest = read_manifest(path)
    model = PKVAE(VAEConfig(**manifest["config"]))
    state = load_file(str(path.parent / manifest["weights_file"]))
    missing = set(model.state_dict()) - set(state)
    if missing - {k for k in model.state_dict() if k.startswith("population.")}:
        raise ValueError(f"{path}: weights lack {sorted(missing)}")
    model.load_state_dict({**model.state_dict(), **state})
    model.eval()
    training = manifest["training"]
    data = load_or_generate(drug, training["n_patients"], training["n_intervals"], training["data_seed"], data_dir,
                            progress=False)
    training["latent_population"] = fit_latent_population(model, data)
    save_model(model, shipped_weights_dir(), training, manifest.get("metrics"))
    return training["latent_population"]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="pkdose refit", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--drug", required=True, choices=(*DRUGS, "all"), help="drug, or 'all'")
    p.add_argument("--data-dir", type=Path, default=Path("data"), help="data set cache (default data/)")
    args = p.parse_args(argv)
    for drug in DRUGS if args.drug == "all" else (args.drug,):
        print(drug, refit(drug, args.data_dir))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
