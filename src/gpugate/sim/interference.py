"""How much jobs sharing one GPU slow each other down, fitted on Gavel's measured pairs.

The model (docs/interference.md): ``n`` jobs share a GPU; job ``i`` has utilization demand
``u_i`` in [0, 1] (its utilization alone). With ``U = sum_j u_j`` and the partners' load
``P_i = U - u_i``, job ``i`` progresses at this fraction of its solo speed::

    speed_i = 1                                                    if n == 1
    speed_i = (1 - kappa) * min(1, U**-beta) / (1 + alpha * P_i / (1 - sigma + sigma * u_i))

Gavel's data has no utilizations, so the fit gives every job type a latent intensity per GPU
model and fits those together with the global parameters; only the globals are kept
(the fit: ``interference_fit``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

GAVEL_GPUS = ("k80", "p100", "v100")


@dataclass(frozen=True, slots=True)
class InterferenceModel:
    """Speeds of the jobs sharing one GPU. The defaults mean no interference.

    Parameters, by where they appear in the module docstring's equation:

    - ``alpha``: slowdown per unit of partner load for a saturating job (``u_i = 1``), whose
      speed is ``1 / (1 + alpha * P_i)``; ``alpha = 1`` is plain time slicing.
    - ``sigma`` in [0, 1): how much more a light job suffers, because its kernels queue behind
      its partners' time slices: at ``u_i = 0`` the partners weigh ``1 / (1 - sigma)`` times more.
    - ``beta`` >= 0: oversubscription penalty once the summed demand ``U`` exceeds the GPU.
    - ``kappa`` in [0, 1): fixed cost of sharing the GPU at all (context switches, caches).
    """

    alpha: float = 0.0
    sigma: float = 0.0
    beta: float = 0.0
    kappa: float = 0.0

    def __post_init__(self) -> None:
        if not (self.alpha >= 0 and 0 <= self.sigma < 1 and self.beta >= 0 and 0 <= self.kappa < 1):
            raise ValueError(f"interference parameters out of range: {self}")

    def speeds(self, demands: Sequence[float]) -> list[float]:
        """One speed in (0, 1] per job, in the order of ``demands``.

        Each demand is a utilization fraction in [0, 1]; anything else (NaN included) raises
        ValueError, since a percentage passed by mistake would silently stop every job.
        """
        total = 0.0
        for u in demands:
            if not 0.0 <= u <= 1.0:
                raise ValueError(f"utilization demand {u!r} is not in [0, 1]")
            total += u
        if len(demands) <= 1:
            return [1.0] * len(demands)
        # U <= 1 fits in the GPU; the guard also keeps 0 ** -beta from being evaluated.
        shared = (1.0 - self.kappa) * (1.0 if total <= 1.0 else total**-self.beta)
        alpha, sigma = self.alpha, self.sigma
        return [shared / (1.0 + alpha * (total - u) / (1.0 - sigma + sigma * u)) for u in demands]


# Form (d) fitted on Gavel's 1881 paired-job throughputs (976 pairs, K80/P100/V100) with
# latent intensities per GPU model; sigma = 0.714375 rounded. Reproduce with (about 5 s;
# add --compare for every candidate form, about 90 s):
#   python -m gpugate.sim.interference_fit \
#       /work/shared/data/traces/gavel_throughputs/simulation_throughputs.json
# MAE of normalised throughput: 0.0886 in-sample, 0.0926 +- 0.0011 in 5-fold CV over pairs,
# 0.1222 leaving a job type out at median intensity, 0.0911 if its intensity were known.
# Baselines (5-fold CV): median speed 0.1440, median per GPU model 0.1373, speed 1 0.4015.
FITTED = InterferenceModel(alpha=1.0, sigma=0.714)
NONE = InterferenceModel()
