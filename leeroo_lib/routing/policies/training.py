"""The training loop the learned policies share: masked BCE (a missing outcome is left out of the
loss, never filled), AdamW, early stopping on a validation part carved from the training rows."""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from sklearn.model_selection import train_test_split


def masked_bce(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy over the measured entries only (targets NaN = not measured); zero,
    without gradient, for a batch where nothing was measured."""
    measured = ~torch.isnan(targets)
    if not measured.any():
        return logits.sum() * 0.0
    return torch.nn.functional.binary_cross_entropy_with_logits(logits[measured], targets[measured])


def validation_split(n: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Train / validation positions for early stopping, carved from the rows given to fit."""
    train, val = train_test_split(np.arange(n), test_size=fraction, random_state=seed)
    return np.sort(train), np.sort(val)


def train_with_early_stopping(
    batches_for_epoch,
    evaluate,
    param_groups,
    get_state,
    set_state,
    *,
    epochs: int,
    patience: int,
    weight_decay: float,
    seed: int,
) -> pd.DataFrame:
    """The training loop of every learned policy: AdamW on masked BCE; ``batches_for_epoch(rng)``
    yields (logits, targets) with gradients, ``evaluate()`` gives the validation loss. Stops after
    ``patience`` epochs without a better validation loss and restores the best epoch's weights.
    Returns the training curve (epoch, train_loss, val_loss)."""
    optimizer = torch.optim.AdamW(param_groups, weight_decay=weight_decay)
    rng = np.random.default_rng(seed)
    history, best, best_state, stale = [], np.inf, None, 0
    for epoch in range(epochs):
        losses = []
        for logits, targets in batches_for_epoch(rng):
            loss = masked_bce(logits, targets)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
        val_loss = evaluate()
        history.append({"epoch": epoch + 1, "train_loss": float(np.mean(losses)), "val_loss": val_loss})
        if val_loss < best:
            best, stale = val_loss, 0
            best_state = {k: v.detach().clone() for k, v in get_state().items()}
        else:
            stale += 1
            if stale >= patience:
                break
    set_state(best_state)
    return pd.DataFrame(history)
