"""Masking of secrets in job output, and the names that count as secrets."""

from __future__ import annotations

import pytest

from groundwork.redaction import MASK, is_secret_name, redact


@pytest.mark.parametrize(
    "secret",
    [
        "sk-ant-api03-" + "a1B2" * 10,
        "sk-proj-" + "x9" * 12,
        "sk-" + "Z" * 48,
        "hf_" + "AbCd" * 9,
        "ghp_" + "1234567890" * 4,
        "github_pat_" + "11ABC" * 8,
        "AKIA" + "ABCDEFGHIJKLMNOP",
    ],
)
def test_well_known_key_formats_are_masked_wherever_they_appear(secret):
    text = f"step 3 loss 1.2\nusing key={secret}, retrying\n"
    assert redact(text, environ={}) == f"step 3 loss 1.2\nusing key={MASK}, retrying\n"


def test_bearer_tokens_and_the_values_of_secret_named_variables_are_masked():
    environ = {"WANDB_API_KEY": "0123456789abcdef-wandb", "DEBUG": "verbose-mode-on", "HF_TOKEN": "on"}
    text = "Authorization: Bearer eyJhbGciOi.J9.xyz\nwandb key 0123456789abcdef-wandb\nmode verbose-mode-on\non\n"
    assert redact(text, environ) == f"Authorization: Bearer {MASK}\nwandb key {MASK}\nmode verbose-mode-on\non\n"


def test_ordinary_output_is_left_alone():
    text = "task-1234 sk-learn risk-free tokens=512 hf_hub ok AKIA\n"
    assert redact(text, environ={}) == text


@pytest.mark.parametrize(
    "name", ["ANTHROPIC_API_KEY", "OPENAI_APIKEY", "HF_TOKEN", "AWS_SECRET_ACCESS_KEY", "DB_PASSWORD", "TOKEN"]
)
def test_secret_names(name):
    assert is_secret_name(name)


@pytest.mark.parametrize("name", ["TOKENIZERS_PARALLELISM", "PATH", "CUDA_VISIBLE_DEVICES", "HF_HOME", "MAX_TOKENS_X"])
def test_setting_names_are_not_secrets(name):
    assert not is_secret_name(name)
