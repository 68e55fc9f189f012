"""Claims of Henighan et al. 2023 across model sizes: the (T, m) plane.

Same setup as ``claims/test_double_descent.py`` (its module docstring), repeated at several m;
a separate file so that pytest-xdist's ``--dist loadfile`` trains these sweeps on one worker while
another trains the m=2 sweep. Every threshold is in ``claims/expected/dd.yaml``.
"""

from __future__ import annotations

import pytest
import torch
from test_double_descent import ABSTRACT, PAPER

from replication.double_descent import figures

PLANE_QUOTE = ("“there are clearly regions where ‘double descent’ occurs – regions where bigger "
               "models or more data hurt performance”")


def rise_in_standard_errors(later: torch.Tensor, earlier: torch.Tensor) -> torch.Tensor:
    """(…) rise of the mean test loss / all-zero predictor from ``earlier`` to ``later``, in
    standard errors of the difference of the two means over training sets. Both are
    ``(…, datasets)`` tensors of per-set values."""
    spread = (later.var(-1) / later.shape[-1] + earlier.var(-1) / earlier.shape[-1]).sqrt()
    return (later.mean(-1) - earlier.mean(-1)) / spread


@pytest.mark.claim(
    id="dd.model-size.double-descent-regions",
    paper=PAPER, section="Double descent in the (T, m) plane",
    source=f"{ABSTRACT}; the sweep over training-set size T and hidden size m (test loss over "
           "the (T, m) plane). The sentence is the paper's as quoted in issue 8; the paper's "
           "body is not in our search corpus, only its abstract",
    quote=PLANE_QUOTE,
    statement="In the (T, m) plane, with the test loss averaged over each point's training sets: "
              "somewhere more data hurts (at a fixed m the mean test loss rises from one T to the "
              "next) and somewhere a bigger model hurts (at a fixed T it rises from one m to the "
              "next); each rise larger than the spread of the training sets allows.",
)
def test_bigger_models_or_more_data_hurt_somewhere(dd_model_sizes, record):
    hidden = sorted(dd_model_sizes)
    plane = torch.stack([dd_model_sizes[m].test_over_zero for m in hidden])  # (m, T, datasets)
    sizes = dd_model_sizes[hidden[0]].sizes
    more_data = rise_in_standard_errors(plane[:, 1:], plane[:, :-1])  # (m, T - 1)
    bigger_model = rise_in_standard_errors(plane[1:], plane[:-1])  # (m - 1, T)
    worst_t = divmod(int(more_data.argmax()), more_data.shape[1])
    worst_m = divmod(int(bigger_model.argmax()), bigger_model.shape[1])
    record.metric("m", hidden)
    record.metric("T", sizes)
    record.metric("mean test loss / all-zero predictor (m × T)", plane.mean(-1))
    record.metric("rise from T to the next T, in standard errors (m × T pairs)", more_data)
    record.metric("rise from m to the next m, in standard errors (m pairs × T)", bigger_model)
    record.metric("largest rise with T: m, from T, to T",
                  [hidden[worst_t[0]], int(sizes[worst_t[1]]), int(sizes[worst_t[1] + 1])])
    record.metric("largest rise with m: from m, to m, at T",
                  [hidden[worst_m[0]], hidden[worst_m[0] + 1], int(sizes[worst_m[1]])])
    record.check("largest rise of the test loss with T at a fixed m", float(more_data.max()), ">",
                 "rise_standard_errors")
    record.check("largest rise of the test loss with m at a fixed T", float(bigger_model.max()),
                 ">", "rise_standard_errors")
    for m in hidden:
        record.note(dd_model_sizes[m].summary())
    record.figure(figures.model_size_plane(dd_model_sizes), "plane")

