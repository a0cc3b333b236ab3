"""The six kinds of change an idea may be (hyperparameter, architecture, optimizer, loss,
data, other), folding an ideator's finer labels into them, and labelling by keywords: no
model call, so the archive's cells and the report's keyword labels agree. Labelling with a
model is analysis/categories.py's."""

from __future__ import annotations

import re

CATEGORIES = ("hyperparameter", "architecture", "optimizer", "loss", "data", "other")

# Ideators may label ideas more finely (ideation/parsing.py); these fold into the report's six.
FOLD = {
    "schedule": "hyperparameter",
    "initialization": "architecture",
    "normalization": "architecture",
    "regularization": "loss",
}

# Whole-word stems; the title counts twice, since it names the change most directly.
KEYWORDS: dict[str, tuple[str, ...]] = {
    "optimizer": (
        "adam",
        "adamw",
        "sgd",
        "momentum",
        "muon",
        "lion",
        "optimizer",
        "optimiser",
        "beta1",
        "beta2",
        "betas",
        "weight decay",
        "gradient clipping",
        "grad clip",
        "nesterov",
        "ema of weights",
        "lookahead",
    ),
    "hyperparameter": (
        "learning rate",
        "lr",
        "warmup",
        "batch size",
        "schedule",
        "cosine",
        "decay",
        "epochs",
        "steps",
        "hyperparameter",
        "temperature",
        "seed",
        "clip range",
        "group size",
        "rollouts",
    ),
    "architecture": (
        "layer",
        "layers",
        "block",
        "blocks",
        "head",
        "heads",
        "attention",
        "embedding",
        "embeddings",
        "width",
        "depth",
        "mlp",
        "activation",
        "gelu",
        "relu",
        "swiglu",
        "norm",
        "rmsnorm",
        "layernorm",
        "residual",
        "rotary",
        "rope",
        "n_embd",
        "n_layer",
        "n_head",
        "initialization",
        "init",
        "tied",
        "weight tying",
        "architecture",
        "model",
        "wider",
        "narrower",
        "deeper",
        "shallower",
    ),
    "loss": (
        "loss",
        "label smoothing",
        "auxiliary",
        "z-loss",
        "entropy",
        "kl",
        "penalty",
        "reward",
        "advantage",
        "objective",
        "regularization",
        "regularisation",
        "dropout",
    ),
    "data": (
        "data",
        "dataset",
        "context",
        "sequence length",
        "tokens",
        "bytes",
        "curriculum",
        "augmentation",
        "shuffle",
        "sampling",
        "window",
        "prompts",
        "examples",
        "mixture",
        "filtering",
    ),
}
_PATTERNS = {cat: [re.compile(rf"\b{re.escape(word)}\b") for word in words] for cat, words in KEYWORDS.items()}


def keyword_category(title: str, text: str) -> str:
    """The category whose keywords occur most (title counted twice); "other" when none do."""
    title, text = title.lower(), text.lower()
    scores = {
        cat: sum(2 * len(p.findall(title)) + len(p.findall(text)) for p in patterns)
        for cat, patterns in _PATTERNS.items()
    }
    best = max(CATEGORIES[:-1], key=lambda cat: scores[cat])  # ties go to the earlier category
    return best if scores[best] > 0 else "other"


def fold(label: str) -> str:
    label = label.strip().lower()
    label = FOLD.get(label, label)
    return label if label in CATEGORIES else "other"
