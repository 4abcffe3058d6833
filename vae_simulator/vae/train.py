"""Train one drug's PK-VAE on ground-truth virtual patients.

    pkdose vae --drug vancomycin --export       # generate data if needed, train, export
    pkdose vae --drug all --export              # every drug: the shipped decoders
    python -m vae_simulator.vae.train --drug phenytoin --epochs 100 --resume

Per epoch it writes ``<out>/checkpoint.pt`` (model, optimiser, early-stopping state; tensors
and numbers only, loaded with ``weights_only=True``), so a killed run continues with
``--resume`` exactly where it stopped: every epoch's randomness is derived from
``(seed, epoch)``. TensorBoard logs go to ``<out>/tb``. Early stopping watches the loss
on held-out virtual patients; the best weights are exported with a manifest.
"""

from __future__ import annotations

import argparse
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.tensorboard import SummaryWriter
from tqdm.auto import tqdm

from vae_simulator.groundtruth import DRUGS, get_model
from vae_simulator.population import PopulationData, simulate_dataset
from vae_simulator.vae.data import TrainingTensors
from vae_simulator.vae.io import save_model, shipped_weights_dir, torch_load_checkpoint
from vae_simulator.vae.latent import fit_latent_population
from vae_simulator.vae.model import PKVAE, VAEConfig

#: Covariates entering the model on a log scale (all positive); SEX stays 0/1.
LOG_COVARIATES = ("AGE", "WT", "HT", "BSA", "SCR", "CRCL")

#: Dosing intervals per training patient: a treatment course as long as the environments' longest
#: episode (the decoder is not trusted beyond the horizon it was trained on).
TRAIN_INTERVALS: dict[str, int] = {
    "vancomycin": 20,     # q12h, 10 days
    "phenytoin": 14,      # q24h, 14 days
    "mycophenolate": 14,  # q12h, 7 days
    "theophylline": 14,   # q12h, 7 days
    "pembrolizumab": 8,   # q3w, ~6 months
    "paclitaxel": 6,      # q3w, 6 cycles
    "carboplatin": 6,     # q3w, 6 cycles
}


@dataclass
class TrainSettings:
    """Optimisation settings (defaults tuned on the CPU budget of the project)."""

    epochs: int = 30
    batch_size: int = 128
    lr: float = 2e-3
    weight_decay: float = 1e-5
    patience: int = 5
    validation_fraction: float = 0.1
    kl_warmup_epochs: int = 10
    latent_dim: int = 6
    hidden: int = 96
    seed: int = 0


def build_model(data: PopulationData, settings: TrainSettings) -> PKVAE:
    """A PK-VAE sized for ``data``'s drug with scaling fitted on ``data``."""
    drug = get_model(data.drug)
    cfg = VAEConfig(drug=data.drug, n_covariates=len(data.covariate_names), grid_size=len(data.grid_h),
                    latent_dim=settings.latent_dim, hidden=settings.hidden, interval_h=data.interval_h,
                    max_intervals=data.doses_mg.shape[1], dose_max_mg=float(drug.dose_range_mg[1]),
                    c0_mg_l=0.5 * drug.lloq_mg_l)
    model = PKVAE(cfg)
    fit_scaling(model.normalizer, data.covariate_names, data.covariates, data.conc_obs, cfg.c0_mg_l)
    return model


@torch.no_grad()
def fit_scaling(norm, covariate_names, covariates: np.ndarray, conc_obs_mg_l: np.ndarray, c0_mg_l: float,
                log_covariates=LOG_COVARIATES) -> None:
    """Fit a :class:`~vae_simulator.vae.model.Normalizer` in place: covariates (log for the names in
    ``log_covariates``) and ``log(C + c0)`` standardised over the given observations."""
    log_mask = torch.tensor([c in log_covariates for c in covariate_names], dtype=torch.float32)
    cov = torch.as_tensor(covariates, dtype=torch.float32)
    logged = torch.where(log_mask > 0, torch.log(cov.clamp_min(1e-6)), cov)
    norm.cov_log.copy_(log_mask)
    norm.cov_mean.copy_(logged.mean(0))
    norm.cov_std.copy_(logged.std(0).clamp_min(1e-3))
    log_c = torch.log(torch.as_tensor(conc_obs_mg_l, dtype=torch.float32).clamp_min(0) + c0_mg_l)
    norm.y_shift.fill_(float(log_c.mean()))
    norm.y_scale.fill_(float(log_c.std().clamp_min(1e-3)))


def split_patients(n: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    perm = np.random.default_rng([seed, 7919]).permutation(n)
    n_val = max(1, round(fraction * n))
    return np.sort(perm[n_val:]), np.sort(perm[:n_val])


def evaluate_loss(model: PKVAE, tensors: TrainingTensors, index: np.ndarray, mask: torch.Tensor,
                  batch_size: int = 1024) -> float:
    """Deterministic validation loss (posterior mean, beta = 1) per patient."""
    model.eval()
    total = 0.0
    with torch.no_grad():
        for s in range(0, len(index), batch_size):
            loss, _ = model.loss(tensors.batch(index[s:s + batch_size], mask[s:s + batch_size]), sample=False)
            total += float(loss) * len(index[s:s + batch_size])
    return total / len(index)


def train_vae(data: PopulationData, out_dir: Path, settings: TrainSettings, resume: bool = False,
              progress: bool = True) -> tuple[PKVAE, dict]:
    """Train on ``data``; returns the best model (by validation loss) and a training summary."""
    out_dir = Path(out_dir)
    ckpt_path = out_dir / "checkpoint.pt"
    if resume and not ckpt_path.is_file():
        raise FileNotFoundError(f"--resume given but {ckpt_path} does not exist")
    out_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(settings.seed)
    model = build_model(data, settings)
    tensors = TrainingTensors(data, model)
    train_idx, val_idx = split_patients(tensors.n, settings.validation_fraction, settings.seed)
    val_mask = tensors.view_masks(np.random.default_rng([settings.seed, 104729]), val_idx)
    opt = torch.optim.AdamW(model.parameters(), lr=settings.lr, weight_decay=settings.weight_decay)
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, factor=0.5, patience=max(2, settings.patience // 3))
    # What must match to resume; the epoch budget and patience may be raised on resume.
    fingerprint = {"drug": data.drug, "data_seed": data.seed, "n_patients": tensors.n, "n_intervals": tensors.k,
                   "settings": {k: v for k, v in vars(settings).items() if k not in ("epochs", "patience")}}
    state = {"epoch": 0, "best_val": math.inf, "bad_epochs": 0, "best_state": None}
    if resume:
        ckpt = torch_load_checkpoint(ckpt_path)
        if ckpt.get("fingerprint") != fingerprint:
            raise ValueError(f"{ckpt_path} was written for another run ({ckpt.get('fingerprint')}); "
                             f"it cannot resume {fingerprint}")
        missing, unexpected = model.load_state_dict(ckpt["model"], strict=False)
        # the latent population is fitted after training, so older checkpoints lack it (and only it)
        if unexpected or any(not k.startswith("population.") for k in missing):
            raise ValueError(f"{ckpt_path} does not fit this PK-VAE: missing {missing}, unexpected {unexpected}")
        opt.load_state_dict(ckpt["optimizer"])
        sched.load_state_dict(ckpt["scheduler"])
        state = {k: ckpt[k] for k in state}
    writer = SummaryWriter(str(out_dir / "tb"))
    bar = tqdm(total=settings.epochs, initial=state["epoch"], desc=f"PK-VAE {data.drug}", unit="epoch",
               disable=not progress)
    started = time.perf_counter()
    while state["epoch"] < settings.epochs and state["bad_epochs"] < settings.patience:
        epoch = state["epoch"]
        rng = np.random.default_rng([settings.seed, epoch])
        torch.manual_seed(settings.seed * 100_003 + epoch)
        beta = min(1.0, (epoch + 1) / max(settings.kl_warmup_epochs, 1))
        model.train()
        order = rng.permutation(train_idx)
        masks = tensors.view_masks(rng, order)
        sums = {"loss": 0.0, "nll": 0.0, "kl": 0.0}
        for s in range(0, len(order), settings.batch_size):
            loss, parts = model.loss(tensors.batch(order[s:s + settings.batch_size],
                                                   masks[s:s + settings.batch_size]), beta=beta)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 10.0)
            opt.step()
            w = len(order[s:s + settings.batch_size]) / len(order)
            sums["loss"] += float(loss.detach()) * w
            sums["nll"] += float(parts["nll"]) * w
            sums["kl"] += float(parts["kl"]) * w
        val = evaluate_loss(model, tensors, val_idx, val_mask)
        sched.step(val)
        for key, value in sums.items():
            writer.add_scalar(f"train/{key}", value, epoch)
        writer.add_scalar("val/loss", val, epoch)
        writer.add_scalar("train/beta", beta, epoch)
        writer.add_scalar("train/lr", opt.param_groups[0]["lr"], epoch)
        if val < state["best_val"] - 1e-3:
            state.update(best_val=val, bad_epochs=0,
                         best_state={k: v.detach().clone() for k, v in model.state_dict().items()})
        else:
            state["bad_epochs"] += 1
        state["epoch"] = epoch + 1
        torch.save({"model": model.state_dict(), "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                    "fingerprint": fingerprint, **state}, ckpt_path)
        bar.update(1)
        bar.set_postfix(train=f"{sums['loss']:.1f}", val=f"{val:.1f}", kl=f"{sums['kl']:.1f}")
    bar.close()
    writer.close()
    if state["best_state"] is not None:
        model.load_state_dict(state["best_state"])
    model.eval()
    latent = fit_latent_population(model, data)
    summary = {"latent_population": latent, "data_seed": data.seed, "n_patients": tensors.n, "n_train": len(train_idx),
               "n_validation": len(val_idx), "n_intervals": tensors.k, "epochs_run": state["epoch"],
               "best_validation_loss": state["best_val"], "train_seconds_this_run": time.perf_counter() - started,
               "settings": vars(settings)}
    return model, summary


def load_or_generate(drug: str, n_patients: int, n_intervals: int, seed: int, data_dir: Path,
                     progress: bool = True) -> PopulationData:
    """The data set ``data/<drug>_n<N>_k<K>_s<seed>.npz``, generated when absent."""
    path = Path(data_dir) / f"{drug}_n{n_patients}_k{n_intervals}_s{seed}.npz"
    if path.is_file():
        return PopulationData.from_npz(path)
    data = simulate_dataset(drug, n_patients, n_intervals, seed, progress=progress)
    path.parent.mkdir(parents=True, exist_ok=True)
    data.to_npz(path)
    return data


def build_parser() -> argparse.ArgumentParser:
    d = TrainSettings()
    p = argparse.ArgumentParser(prog="pkdose vae", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--drug", required=True, choices=(*DRUGS, "all"), help="drug whose PK-VAE to train, or 'all'")
    p.add_argument("--patients", type=int, default=4_000, help="training virtual patients (default 4000)")
    p.add_argument("--intervals", type=int, default=None,
                   help="dosing intervals per patient (default: the drug's course, TRAIN_INTERVALS)")
    p.add_argument("--data-seed", type=int, default=0, help="seed of the training population (default 0)")
    p.add_argument("--data-dir", type=Path, default=Path("data"), help="where data sets are cached (default data/)")
    p.add_argument("--epochs", type=int, default=d.epochs, help=f"maximum epochs (default {d.epochs})")
    p.add_argument("--batch-size", type=int, default=d.batch_size, help=f"default {d.batch_size}")
    p.add_argument("--lr", type=float, default=d.lr, help=f"AdamW learning rate (default {d.lr})")
    p.add_argument("--patience", type=int, default=d.patience,
                   help=f"early stopping: epochs without validation improvement (default {d.patience})")
    p.add_argument("--latent-dim", type=int, default=d.latent_dim, help=f"latent size (default {d.latent_dim})")
    p.add_argument("--hidden", type=int, default=d.hidden, help=f"hidden units (default {d.hidden})")
    p.add_argument("--seed", type=int, default=d.seed, help="training seed (default 0)")
    p.add_argument("--out", type=Path, default=None, help="run folder (default runs/vae/<drug>)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its checkpoint")
    p.add_argument("--export", action="store_true",
                   help="write the best weights into the package (vae_simulator/weights/)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    for name in ("patients", "intervals", "epochs", "batch_size", "latent_dim", "hidden"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise SystemExit(f"error: --{name.replace('_', '-')} must be >= 1, got {value}")
    if args.drug == "all" and args.out is not None:
        raise SystemExit("error: --out names one run folder; with --drug all each drug uses runs/vae/<drug>")
    for drug in DRUGS if args.drug == "all" else (args.drug,):
        out = args.out or Path("runs/vae") / drug
        intervals = args.intervals or TRAIN_INTERVALS[drug]
        data = load_or_generate(drug, args.patients, intervals, args.data_seed, args.data_dir,
                                progress=not args.no_progress)
        settings = TrainSettings(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                                 patience=args.patience, latent_dim=args.latent_dim, hidden=args.hidden,
                                 seed=args.seed)
        model, summary = train_vae(data, out, settings, resume=args.resume, progress=not args.no_progress)
        _, manifest = save_model(model, out / "best", summary)
        print(f"{drug}: best validation loss {summary['best_validation_loss']:.2f} after "
              f"{summary['epochs_run']} epochs -> {manifest}")
        if args.export:
            _, manifest = save_model(model, shipped_weights_dir(), summary)
            print(f"exported to {manifest}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
