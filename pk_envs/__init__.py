"""Gymnasium environments for precision dosing on PK-VAE virtual patients.

``import pk_envs`` registers the ids (Gymnasium 1.x autoloads nothing); then
``gym.make("PKDose/Vancomycin-v0")`` or ``gym.make_vec(id, num_envs=N)`` (natively batched).
A drug's trained PK-VAE is loaded when its first environment is made.

Single-drug precision dosing (:class:`~pk_envs.single_drug.SingleDrugEnv`), ``<Drug>`` one of
Vancomycin, Phenytoin, Mycophenolate, Theophylline, Pembrolizumab:

| id | reward | action | observation | difficulty |
|---|---|---|---|---|
| ``PKDose/<Drug>-v0`` | scalar ``efficacy - toxicity`` | continuous ``Box(-1, 1, (1,))`` | clinic: covariates, doses, sparse noisy assays | published assay error |
| ``PKDose/<Drug>-MO-v0`` | vector ``[efficacy, -toxicity]`` (MO-Gymnasium) | continuous | clinic | published |
| ``PKDose/<Drug>-Discrete-v0`` | scalar | ``Discrete`` dose levels | clinic | published |
| ``PKDose/<Drug>-FullObs-v0`` | scalar | continuous | clinic + true exposure + latent z | published |
| ``PKDose/<Drug>-Hard-v0`` | scalar | continuous | clinic | 2 x assay error, 25 % of samples missing |

Each exists as ``-v0`` (patients from the interval-grid PK-VAE) and ``-v1`` (from the
continuous-time PK-VAE on the same schedule; a hold beyond its trained gap truncates the episode).

Episode lengths (``max_episode_steps``): vancomycin 20 (q12h, 10 days), phenytoin 14 (q24h),
mycophenolate 14 (q12h), theophylline 14 (q12h), pembrolizumab 8 (q3w). Any constructor
argument can be passed to ``gym.make``, e.g. ``gym.make("PKDose/Vancomycin-MO-v0", discrete=True)``
or ``iiv_scale=0.5``; see the SingleDrugEnv docstring for spaces, rewards and arguments.

Combination chemotherapy, paclitaxel + carboplatin every 3 weeks, 6 cycles
(:class:`~pk_envs.combination.PaclitaxelCarboplatinEnv`):

| id | reward | action |
|---|---|---|
| ``PKDose/PaclitaxelCarboplatin-v0`` | scalar ``response - toxicity`` | ``Box(-1, 1, (2,))``: paclitaxel 0-225 mg/m2, carboplatin AUC 0-7.5 mg*min/mL |
| ``PKDose/PaclitaxelCarboplatin-MO-v0`` | vector ``[response, -toxicity]`` | continuous |
| ``PKDose/PaclitaxelCarboplatin-Discrete-v0`` | scalar | ``Discrete(25)``: each drug held, -40 %, -20 %, standard, +20 % |

Regimens: dose, interval and whether to draw a level, one step per dose, on the continuous-time
PK-VAE (:class:`~pk_envs.regimen.RegimenEnv`; ids in :mod:`pk_envs.regimen_registration`):
``PKDose/Vancomycin-Regimen-v0`` (intervals 8/12/24/48 h), ``PKDose/Phenytoin-Regimen-v0``
(8/12/24 h), each with ``-MO`` (``[efficacy, -toxicity, -levels]``) and ``-Discrete`` variants.

Your own drug: ``gym.make("PKDose/Custom-v0", weights=MANIFEST, target="auc24:400-600")`` doses a
PK-VAE learnt from your table (:class:`~pk_envs.custom.CustomDrugEnv`; variants as the single-drug
ids). ``CUSTOM_IDS`` are not in ``ALL_IDS``: they need weights to be made.
"""

from pk_envs.combination import PaclitaxelCarboplatinEnv
from pk_envs.combination_registration import register_combination_envs
from pk_envs.combination_vector import PaclitaxelCarboplatinVectorEnv
from pk_envs.custom import CustomDrugEnv
from pk_envs.custom_vector import CustomDrugVectorEnv
from pk_envs.regimen import RegimenEnv
from pk_envs.regimen_registration import register_regimen_envs
from pk_envs.regimen_vector import RegimenVectorEnv
from pk_envs.registration import SINGLE_DRUG_VARIANTS, env_id, register_custom_envs, register_single_drug_envs
from pk_envs.single_drug import SingleDrugEnv
from pk_envs.single_drug_vector import SingleDrugVectorEnv

SINGLE_DRUG_IDS: tuple[str, ...] = tuple(register_single_drug_envs())
COMBINATION_IDS: tuple[str, ...] = tuple(register_combination_envs())
REGIMEN_IDS: tuple[str, ...] = tuple(register_regimen_envs())
CUSTOM_IDS: tuple[str, ...] = tuple(register_custom_envs())
ALL_IDS: tuple[str, ...] = SINGLE_DRUG_IDS + COMBINATION_IDS + REGIMEN_IDS

__all__ = [
           "ALL_IDS",
           "COMBINATION_IDS",
           "CUSTOM_IDS",
           "REGIMEN_IDS",
           "SINGLE_DRUG_IDS",
           "SINGLE_DRUG_VARIANTS",
           "CustomDrugEnv",
           "CustomDrugVectorEnv",
           "PaclitaxelCarboplatinEnv",
           "PaclitaxelCarboplatinVectorEnv",
           "RegimenEnv",
           "RegimenVectorEnv",
           "SingleDrugEnv",
           "SingleDrugVectorEnv",
           "env_id",
]
