"""Train one drug's continuous-time PK-VAE on virtual patients on any regimens.

    python -m vae_simulator.vae.ct_train --drug vancomycin --export
    python -m vae_simulator.vae.ct_train --drug all --export          # the shipped CT decoders
    python -m vae_simulator.vae.ct_train --drug phenytoin --resume    # continue a killed run

Data: :func:`~vae_simulator.irregular.simulate_regimen_dataset` (regular and irregular regimens,
dense noisy profiles), cached as ``data/regimens_<drug>_n<N>_s<seed>.npz``. The encoder sees
random views of each patient (:func:`ct_view_masks`): a few samples anywhere, the samples a
clinic has taken up to a random time (MIPD: forecast from what is known so far), or the whole
profile; the decoder is scored on the whole profile, so it learns to forecast.

The first :attr:`CTTrainSettings.log_warmup_epochs` epochs fit ``log(C + c0)`` with a Gaussian
at the learned proportional error (:meth:`~vae_simulator.vae.ct_model.CTPKVAE.log_warmup_nll`);
then the linear-scale combined-error likelihood with M3 censoring
(:meth:`~vae_simulator.vae.ct_model.CTPKVAE.loss`). Training keeps a KL floor of
:attr:`CTTrainSettings.free_bits_nats` per latent dimension (free bits) so the encoder does not
collapse to the prior. Every epoch writes ``<out>/checkpoint.pt``
(tensors and numbers only, read with ``weights_only=True``); ``--resume`` continues exactly,
every epoch's randomness being derived from ``(seed, epoch)``. TensorBoard logs in ``<out>/tb``.
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
from vae_simulator.irregular import RegimenData, regimen_limits, simulate_regimen_dataset
from vae_simulator.vae.ct_model import CTPKVAE, CTConfig
from vae_simulator.vae.io import ct_weights_path, save_model, torch_load_checkpoint
from vae_simulator.vae.latent import fit_population_moments
from vae_simulator.vae.train import fit_scaling, split_patients

#: Drugs whose profile follows the time of day, and the clock bumps their decoders get by default
#: (mycophenolate: second peaks at meal-timed gallbladder emptying; docs/pk_vae.md)
CLOCK_FEATURES = {"mycophenolate": 48}

#: Encoder views: a few samples anywhere, the clinic's samples so far, the whole profile.
VIEW_PROBS = (0.4, 0.4, 0.2)
MAX_FEW, MAX_SO_FAR = 8, 4




@dataclass
class CTTrainSettings:
    """Optimisation settings (defaults sized for 4,000 patients in minutes on 2 CPU cores)."""

    epochs: int = 60
    batch_size: int = 64
    lr: float = 2e-3
    weight_decay: float = 1e-5
    patience: int = 8
    validation_fraction: float = 0.1
    kl_warmup_epochs: int = 8
    #: free bits per latent dimension (nats; :meth:`~vae_simulator.vae.ct_model.CTPKVAE.loss`); without
    #: them carboplatin's decoder used no latent dimension (median APE 23.4 %), with 1 nat 9.5 %
    #: (``pkdose vae-ct --drug carboplatin --epochs 120``, ``pkdose validate-ct --drug carboplatin``; docs/pk_vae.md)
    free_bits_nats: float = 1.0
    log_warmup_epochs: int = 2
    latent_dim: int = 6
    hidden: int = 96
    #: shortest time constant (h) of the decoder's time features, and how many (log-spaced)
    time_scale_min_h: float = 0.25
    n_time_scales: int = 12
    #: the decoder's log-time feature (:class:`~vae_simulator.vae.ct_model.TimeFeatures`)
    log_time: bool = True
    #: clock features (:class:`~vae_simulator.vae.ct_model.ClockFeatures`): period (h), bumps (0 = none)
    clock_period_h: float = 24.0
    n_clock_features: int = 0
    seed: int = 0


class CTTensors:
    """A :class:`RegimenData` as float32 tensors, indexed by patient."""

    def __init__(self, data: RegimenData):
        f32 = lambda a: torch.as_tensor(np.asarray(a, dtype=np.float32))
        self.n = len(data)
        self.fields = {"cov": f32(data.covariates), "dose_time_h": f32(data.dose_time_h), "dose_mg": f32(data.dose_mg),
                       "infusion_h": f32(data.infusion_h), "obs_time_h": f32(data.obs_time_h),
                       "conc_obs": f32(data.conc_obs), "blq": torch.as_tensor(data.blq),
                       "obs_mask": torch.as_tensor(data.obs_mask)}

    def batch(self, index) -> dict[str, torch.Tensor]:
        idx = torch.as_tensor(np.asarray(index))
        return {k: v[idx] for k, v in self.fields.items()}


def ct_view_masks(rng: np.random.Generator, obs_time_h: np.ndarray, obs_mask: np.ndarray) -> np.ndarray:
    """One random encoder view per patient (see :data:`VIEW_PROBS`), boolean ``(n, T)``."""
    n, t = obs_mask.shape
    view = rng.choice(3, size=n, p=VIEW_PROBS)
    ranks = np.argsort(np.argsort(np.where(obs_mask, rng.random((n, t)), 2.0), axis=1), axis=1)
    few = ranks < rng.integers(1, MAX_FEW + 1, size=(n, 1))
    first, last = obs_time_h[:, :1], np.where(obs_mask, obs_time_h, -np.inf).max(1, keepdims=True)
    cutoff = first + rng.random((n, 1)) * (last - first)
    known = obs_mask & (obs_time_h <= cutoff)
    known_ranks = np.argsort(np.argsort(np.where(known, rng.random((n, t)), 2.0), axis=1), axis=1)
    so_far = known & (known_ranks < rng.integers(1, MAX_SO_FAR + 1, size=(n, 1)))
    mask = np.where((view == 0)[:, None], few, np.where((view == 1)[:, None], so_far, obs_mask)) & obs_mask
    empty = ~mask.any(axis=1)
    mask[empty, 0] = obs_mask[empty, 0]  # nothing known yet: the first sample
    return mask


def build_ct_model(data: RegimenData, settings: CTTrainSettings) -> CTPKVAE:
    """A CT PK-VAE sized for ``data``'s drug, its range from the data's limits, scaling fitted on ``data``."""
    drug, limits = get_model(data.drug), regimen_limits(data.drug)
    cfg = CTConfig(drug=data.drug, n_covariates=len(data.covariate_names), interval_h=float(drug.interval_h),
                   horizon_h=limits.horizon_h, max_gap_h=limits.max_gap_h, dose_max_mg=limits.dose_max_mg,
                   infusion_range_h=tuple(limits.infusion_range_h), lloq_mg_l=float(drug.lloq_mg_l),
                   latent_dim=settings.latent_dim, hidden=settings.hidden, c0_mg_l=0.5 * float(drug.lloq_mg_l),
                   time_scale_min_h=settings.time_scale_min_h, n_time_scales=settings.n_time_scales,
                   log_time=settings.log_time, clock_period_h=settings.clock_period_h,
                   n_clock_features=settings.n_clock_features)
    model = CTPKVAE(cfg)
    fit_scaling(model.normalizer, data.covariate_names, data.covariates, data.conc_obs[data.obs_mask], cfg.c0_mg_l)
    return model


def _epoch_loss(model, tensors, index, masks, settings, beta, log_warmup, opt=None) -> dict[str, float]:
    sums: dict[str, float] = {}
    for s in range(0, len(index), settings.batch_size):
        rows = index[s:s + settings.batch_size]
        batch = tensors.batch(rows)
        with torch.set_grad_enabled(opt is not None):
            loss, parts = model.loss(batch, torch.as_tensor(masks[s:s + len(rows)]), beta=beta,
                                     sample=opt is not None, log_warmup=log_warmup,
                                     free_bits_nats=settings.free_bits_nats if opt is not None else 0.0)
        if opt is not None:
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 10.0)
            opt.step()
        w = len(rows) / len(index)
        for key, value in {"loss": float(loss.detach()), **parts}.items():
            sums[key] = sums.get(key, 0.0) + value * w
    return sums


def train_ct_vae(data: RegimenData, out_dir: Path, settings: CTTrainSettings, resume: bool = False,
                 progress: bool = True, model: CTPKVAE | None = None,
                 data_id: str | None = None) -> tuple[CTPKVAE, dict]:
    """Train on ``data``; returns the best model (by validation loss) and a training summary.

    ``model``: an untrained model built for data that are not a shipped drug's (a clinic table,
    :mod:`vae_simulator.byod.train`); default :func:`build_ct_model`. ``data_id`` (e.g. the
    table's SHA-256) joins the checkpoint's fingerprint, so ``resume`` refuses another data set.
    """
    out_dir, started = Path(out_dir), time.perf_counter()
    ckpt_path = out_dir / "checkpoint.pt"
    if resume and not ckpt_path.is_file():
        raise FileNotFoundError(f"--resume given but {ckpt_path} does not exist")
    out_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(settings.seed)
    model = build_ct_model(data, settings) if model is None else model
    tensors = CTTensors(data)
    train_idx, val_idx = split_patients(len(data), settings.validation_fraction, settings.seed)
    val_masks = ct_view_masks(np.random.default_rng([settings.seed, 104729]), data.obs_time_h[val_idx],
                              data.obs_mask[val_idx])
    opt = torch.optim.AdamW(model.parameters(), lr=settings.lr, weight_decay=settings.weight_decay)
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, factor=0.5, patience=2)
    fingerprint = {"drug": data.drug, "data_seed": data.seed, "n_patients": len(data),
                   "settings": {k: v for k, v in vars(settings).items() if k not in ("epochs", "patience")}}
    if data_id is not None:
        fingerprint["data_id"] = data_id
    state = {"epoch": 0, "best_val": math.inf, "bad_epochs": 0, "best_state": None}
    if resume:
        ckpt = torch_load_checkpoint(ckpt_path)
        if ckpt.get("fingerprint") != fingerprint:
            raise ValueError(f"{ckpt_path} was written for another run ({ckpt.get('fingerprint')}); "
                             f"it cannot resume {fingerprint}")
        model.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["optimizer"])
        sched.load_state_dict(ckpt["scheduler"])
        state = {k: ckpt[k] for k in state}
    writer = SummaryWriter(str(out_dir / "tb"))
    bar = tqdm(total=settings.epochs, initial=state["epoch"], desc=f"CT PK-VAE {data.drug}", unit="epoch",
               disable=not progress)
    while state["epoch"] < settings.epochs and state["bad_epochs"] < settings.patience:
        epoch = state["epoch"]
        rng = np.random.default_rng([settings.seed, epoch])
        torch.manual_seed(settings.seed * 100_003 + epoch)
        log_warmup = epoch < settings.log_warmup_epochs
        beta = min(1.0, (epoch + 1) / max(settings.kl_warmup_epochs, 1))
        model.train()
        order = rng.permutation(train_idx)
        train = _epoch_loss(model, tensors, order, ct_view_masks(rng, data.obs_time_h[order], data.obs_mask[order]),
                            settings, beta, log_warmup, opt)
        model.eval()
        val = _epoch_loss(model, tensors, val_idx, val_masks, settings, 1.0, log_warmup)["loss"]
        for key, value in train.items():
            writer.add_scalar(f"train/{key}", value, epoch)
        writer.add_scalar("val/loss", val, epoch)
        writer.add_scalar("train/lr", opt.param_groups[0]["lr"], epoch)
        if log_warmup:  # the likelihood changes after the warm-up: no early stopping on it
            state["best_val"] = math.inf
        else:
            sched.step(val)
            if val < state["best_val"] - 1e-3:
                state.update(best_val=val, bad_epochs=0,
                             best_state={k: v.detach().clone() for k, v in model.state_dict().items()})
            else:
                state["bad_epochs"] += 1
        state["epoch"] = epoch + 1
        torch.save({"model": model.state_dict(), "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                    "fingerprint": fingerprint, **state}, ckpt_path)
        bar.update(1)
        bar.set_postfix(train=f"{train['loss']:.1f}", val=f"{val:.1f}", sigma_prop=f"{train['sigma_prop']:.3f}")
    bar.close()
    writer.close()
    if state["best_state"] is not None:
        model.load_state_dict(state["best_state"])
    model.eval()
    latent = fit_ct_latent_population(model, data.take(train_idx))
    summary = {"latent_population": latent, "data_seed": data.seed, "n_patients": len(data),
               "n_train": len(train_idx), "n_validation": len(val_idx), "epochs_run": state["epoch"],
               "best_validation_loss": state["best_val"], "train_seconds_this_run": time.perf_counter() - started,
               "sigma_prop": float(torch.exp(model.log_sigma_prop.detach())),
               "sigma_add_mg_l": float(torch.exp(model.log_sigma_add.detach())), "settings": vars(settings)}
    return model, summary


@torch.no_grad()
def encode_posteriors(model: CTPKVAE, data: RegimenData, mask: np.ndarray | None = None,
                      batch_size: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
    """Posterior means and SDs ``(n, d)`` given the samples in ``mask`` (default: all)."""
    tensors, mask = CTTensors(data), data.obs_mask if mask is None else mask
    means, sds = [], []
    for s in range(0, len(data), batch_size):
        mean, logvar = model.encode(tensors.batch(np.arange(s, min(len(data), s + batch_size))),
                                    torch.as_tensor(mask[s:s + batch_size]))
        means.append(mean)
        sds.append(torch.exp(0.5 * logvar))
    return torch.cat(means), torch.cat(sds)


@torch.no_grad()
def fit_ct_latent_population(model: CTPKVAE, data: RegimenData) -> dict[str, float]:
    """Fit ``model.population`` from the full-profile posteriors of ``data``'s patients."""
    mean, sd = encode_posteriors(model, data)
    x = model.normalizer.covariates(torch.as_tensor(data.covariates, dtype=torch.float32))
    return fit_population_moments(model.population, x, mean, sd)


def load_or_generate_regimens(drug: str, n_patients: int, seed: int, data_dir: Path,
                              progress: bool = True) -> RegimenData:
    """The data set ``<data_dir>/regimens_<drug>_n<N>_s<seed>.npz``, generated when absent."""
    path = Path(data_dir) / f"regimens_{drug}_n{n_patients}_s{seed}.npz"
    if path.is_file():
        return RegimenData.from_npz(path)
    data = simulate_regimen_dataset(drug, n_patients, seed, progress=progress)
    path.parent.mkdir(parents=True, exist_ok=True)
    data.to_npz(path)
    return data


def build_parser() -> argparse.ArgumentParser:
    d = CTTrainSettings()
    p = argparse.ArgumentParser(prog="pkdose vae-ct", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--drug", required=True, choices=(*DRUGS, "all"), help="drug to train, or 'all'")
    p.add_argument("--patients", type=int, default=4_000, help="training virtual patients (default 4000)")
    p.add_argument("--data-seed", type=int, default=0, help="seed of the training population (default 0)")
    p.add_argument("--data-dir", type=Path, default=Path("data"), help="data set cache (default data/)")
    p.add_argument("--epochs", type=int, default=d.epochs, help=f"maximum epochs (default {d.epochs})")
    p.add_argument("--batch-size", type=int, default=d.batch_size, help=f"default {d.batch_size}")
    p.add_argument("--lr", type=float, default=d.lr, help=f"AdamW learning rate (default {d.lr})")
    p.add_argument("--patience", type=int, default=d.patience, help=f"early stopping epochs (default {d.patience})")
    p.add_argument("--latent-dim", type=int, default=d.latent_dim, help=f"latent size (default {d.latent_dim})")
    p.add_argument("--hidden", type=int, default=d.hidden, help=f"hidden units (default {d.hidden})")
    p.add_argument("--time-scale-min", type=float, default=d.time_scale_min_h,
                   help=f"shortest time constant of the time features, h (default {d.time_scale_min_h})")
    p.add_argument("--time-scales", type=int, default=d.n_time_scales,
                   help=f"number of log-spaced time constants (default {d.n_time_scales})")
    p.add_argument("--free-bits", type=float, default=d.free_bits_nats,
                   help=f"KL floor per latent dimension, nats; 0 = plain ELBO (default {d.free_bits_nats})")
    p.add_argument("--seed", type=int, default=d.seed, help="training seed (default 0)")
    p.add_argument("--out", type=Path, default=None, help="run folder (default runs/ctvae/<drug>)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its checkpoint")
    p.add_argument("--clock-features", type=int, default=None,
                   help="periodic clock bumps of the decoder and encoder, 0 = none (default: "
                        f"{', '.join(f'{k} {v}' for k, v in CLOCK_FEATURES.items())}, others 0)")
    p.add_argument("--clock-period", type=float, default=d.clock_period_h,
                   help=f"period of the clock features, h (default {d.clock_period_h:g})")
    p.add_argument("--export", action="store_true",
                   help="write the best weights into the package, as the drug's latest release (ct_weights_path)")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    for name in ("patients", "epochs", "batch_size", "latent_dim", "hidden", "patience"):
        if getattr(args, name) < 1:
            raise SystemExit(f"error: --{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if not (math.isfinite(args.lr) and args.lr > 0):
        raise SystemExit(f"error: --lr must be a finite number > 0, got {args.lr}")
    if not (math.isfinite(args.free_bits) and args.free_bits >= 0):
        raise SystemExit(f"error: --free-bits must be a finite number >= 0 (nats), got {args.free_bits}")
    if args.clock_features is not None and (args.clock_features == 1 or args.clock_features < 0):
        raise SystemExit(f"error: --clock-features must be 0 (none) or >= 2, got {args.clock_features}")
    if not (math.isfinite(args.clock_period) and args.clock_period > 0):
        raise SystemExit(f"error: --clock-period must be a finite number > 0 (h), got {args.clock_period}")
    if args.drug == "all" and args.out is not None:
        raise SystemExit("error: --out names one run folder; with --drug all each drug uses runs/ctvae/<drug>")
    for drug in DRUGS if args.drug == "all" else (args.drug,):
        out = args.out or Path("runs/ctvae") / drug
        data = load_or_generate_regimens(drug, args.patients, args.data_seed, args.data_dir,
                                         progress=not args.no_progress)
        settings = CTTrainSettings(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, patience=args.patience,
                                   latent_dim=args.latent_dim, hidden=args.hidden, seed=args.seed,
                                   time_scale_min_h=args.time_scale_min, n_time_scales=args.time_scales,
                                   free_bits_nats=args.free_bits, clock_period_h=args.clock_period,
                                   n_clock_features=CLOCK_FEATURES.get(drug, 0) if args.clock_features is None
                                   else args.clock_features)
        model, summary = train_ct_vae(data, out, settings, resume=args.resume, progress=not args.no_progress)
        _, manifest = save_model(model, out / "best", summary)
        print(f"{drug}: best validation loss {summary['best_validation_loss']:.2f} after {summary['epochs_run']} "
              f"epochs, sigma_prop {summary['sigma_prop']:.3f}, sigma_add {summary['sigma_add_mg_l']:.3g} mg/L "
              f"-> {manifest}")
        if args.export:
            print(f"exported to {save_model(model, ct_weights_path(drug).parent, summary)[1]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
