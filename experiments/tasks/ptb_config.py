"""Config schema of the Penn Treebank language-modelling task."""

from __future__ import annotations

from dataclasses import dataclass

from experiments.config import TaskConfig
from experiments.tasks.limits import check_limits

PTB_MODELS = ("awd_lstm", "lstm")
LOSS_SCALES = ("awd", "mean", "time_sum")


@dataclass
class PTBTaskConfig(TaskConfig):
    """Word-level PTB LM (paper §5.3). Model sizes and dropouts per scale in conf/task_scale/.

    ``loss_scale`` sets the objective the optimizer sees for a segment of length L (the logged
    ``train_loss`` is always the mean NLL per token): ``mean`` the mean NLL; ``awd`` the
    objective (NLL + AR + TAR) x L / bptt, AWD-LSTM's per-batch lr rescaling moved onto the loss
    (the loop owns the lr); ``time_sum`` the NLL x L, i.e. summed over time and averaged over the
    batch, the cost of Zaremba et al.'s code, which its lr 1 and clip 5 refer to.

    ``limit_eval_tokens`` > 0 (smoke scale) evaluates a fixed window of that many consecutive
    tokens of the validation and of the test stream instead of the whole streams, starting at a
    sentence drawn with a constant seed, the same in every run (``experiments/data/subset.py``;
    recorded in ``task_info.subset``); 0 evaluates them whole.
    """

    model: str = "awd_lstm"  # awd_lstm (paper) | lstm (Zaremba et al. 2014; every weight ~ U(-r, r))
    emb_size: int = 400
    hidden_size: int = 1150
    num_layers: int = 3
    tie_weights: bool = True
    dropout: float = 0.4  # locked dropout on the last layer's output
    dropouth: float = 0.3  # locked dropout between LSTM layers
    dropouti: float = 0.65  # locked dropout on the embedding output
    dropoute: float = 0.1  # embedding dropout: whole words
    wdrop: float = 0.5  # DropConnect on each layer's hidden-to-hidden matrix
    init_range: float = 0.1
    bptt: int = 70
    variable_bptt: bool = True
    alpha_ar: float = 2.0  # activation regularization (AWD-LSTM)
    beta_tar: float = 1.0  # temporal activation regularization
    loss_scale: str = "awd"  # awd | mean | time_sum (see above)
    test_batch_size: int = 0  # 0: data.eval_batch_size
    limit_eval_tokens: int = 0  # > 0: evaluate a fixed window of N tokens of valid and of test; 0: all

    def __post_init__(self) -> None:
        for key, choices in (("model", PTB_MODELS), ("loss_scale", LOSS_SCALES)):
            if getattr(self, key) not in choices:
                raise ValueError(f"Invalid task.{key}: {getattr(self, key)!r}; choose one of {', '.join(choices)}")
        for key in ("emb_size", "hidden_size", "num_layers", "bptt"):
            if getattr(self, key) < 1:
                raise ValueError(f"Invalid task.{key}: {getattr(self, key)!r}; must be >= 1")
        check_limits(self, "limit_eval_tokens")
        if self.test_batch_size < 0:
            raise ValueError(f"Invalid task.test_batch_size: {self.test_batch_size!r}; use 0 or a positive size")
