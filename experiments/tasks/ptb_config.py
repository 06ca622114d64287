"""Config schema of the Penn Treebank language-modelling task."""

from __future__ import annotations

from dataclasses import dataclass

from experiments.config import TaskConfig


@dataclass
class PTBTaskConfig(TaskConfig):
    """Word-level PTB LM (paper §5.3). Model sizes and dropouts per scale in conf/task_scale/."""

    model: str = "awd_lstm"  # awd_lstm (paper) | lstm (Zaremba et al. 2014)
    emb_size: int = 400
    hidden_size: int = 1150
    num_layers: int = 3
    tie_weights: bool = True
    dropout: float = 0.4
    dropouth: float = 0.3
    dropouti: float = 0.65
    dropoute: float = 0.1
    wdrop: float = 0.5
    bptt: int = 70
    variable_bptt: bool = True
    alpha_ar: float = 2.0  # activation regularization (AWD-LSTM)
    beta_tar: float = 1.0  # temporal activation regularization
