"""Henighan et al. 2023's weight-decay comment: strong weight decay removes the bump.

Same setup as ``claims/test_double_descent.py`` (its module docstring) at m=4. A file of its own so
that pytest-xdist's ``--dist loadfile`` can train its sweep on one worker while another trains
the model-size sweeps (``claims/test_double_descent_sizes.py``). Every threshold is in
``claims/expected/dd.yaml``.
"""

from __future__ import annotations

import pytest
from test_double_descent import PAPER, TRANSITION_QUOTE

from replication.double_descent import experiments, figures
from replication.double_descent.metrics import interior_peak_ratio


@pytest.mark.slow
@pytest.mark.claim(
    id="dd.weight-decay.no-bump",
    paper=PAPER, section="Comments: weight decay",
    source="transformer-circuits.pub/2023/toy-double-descent, comments and replications "
           "(Adam Jermyn): weight decay sweep at m=4",
    quote=TRANSITION_QUOTE,
    statement="At m=4 with weight decay 1.0 the double-descent bump is gone: the test loss "
              "averaged over training sets has no interior peak above both ends of the sweep, "
              "while the largest T has not collapsed to the all-zero predictor (so a model that "
              "learnt nothing cannot pass).",
)
def test_strong_weight_decay_removes_the_bump(dd_strong_decay, dd_decay_reference, record):
    m = dd_strong_decay.config.n_hidden
    ratio = dd_strong_decay.test_over_zero.mean(1)
    reference = dd_decay_reference
    record.metric("T", dd_strong_decay.sizes)
    record.metric(f"test loss / all-zero predictor, m={m}, weight decay "
                  f"{experiments.STRONG_WEIGHT_DECAY:g}, mean over training sets", ratio)
    record.metric(f"test loss / all-zero predictor, m={m}, weight decay "
                  f"{reference.config.training.weight_decay:g}, mean over training sets",
                  reference.test_over_zero.mean(1))
    record.check("largest interior test loss / larger end", interior_peak_ratio(ratio), "<=",
                 "interior_peak")
    record.check("test loss / all-zero predictor at the largest T", float(ratio[-1]), "<",
                 "not_collapsed")
    record.note("The collapse guard was ours at 0.9 of the all-zero predictor's loss; no model "
                "of this size reaches that: with n=1000 features and m=4 only a handful fit, "
                "so even a generalising model stays above 0.98 (measured at seed 0: m=2 at weight "
                "decay 1e-2 reaches 0.988 at T=3000, m=4 at 1e-2 is at 1.045). The guard is now "
                "derived: a collapsed model scores exactly 1, so the largest T must score below 1.")
    record.note(dd_strong_decay.summary())
    record.figure(figures.losses({f"m={m}, wd {reference.config.training.weight_decay:g}":
                                  reference, f"m={m}, wd {experiments.STRONG_WEIGHT_DECAY:g}":
                                  dd_strong_decay}), "losses")
