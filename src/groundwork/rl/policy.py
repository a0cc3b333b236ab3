"""The ideator's policy: a Hugging Face causal language model (a local folder, or a model
name already in the local Hugging Face cache), optionally with LoRA adapters, that samples
groups of completions and scores completions with log-probabilities."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from groundwork.rl.config import RLConfig


class PolicyLoadError(ValueError):
    pass


@dataclass(frozen=True)
class Sample:
    prompt_ids: list[int]
    completion_ids: list[int]  # sampled tokens, up to and including the end token when one came
    text: str  # the completion, decoded without special tokens


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def _dtype(name: str, device: torch.device) -> torch.dtype:
    if name == "auto":
        return torch.bfloat16 if device.type == "cuda" and torch.cuda.is_bf16_supported() else torch.float32
    return getattr(torch, name)


def _from_pretrained(loader, source: str, **kwargs):
    """Offline first (a local folder, or the local cache); the network only when the
    model is not there and the user allows it (HF_HUB_OFFLINE unset)."""
    try:
        return loader.from_pretrained(source, local_files_only=True, **kwargs)
    except OSError as offline_error:
        if Path(source).exists() or os.environ.get("HF_HUB_OFFLINE") == "1":
            raise PolicyLoadError(
                f"cannot load {source!r} offline: {offline_error}. Give a folder holding a Hugging Face "
                "model (config.json, weights, tokenizer), or download it first: huggingface-cli download "
                f"{source}"
            ) from None
        try:
            return loader.from_pretrained(source, **kwargs)
        except OSError as exc:
            raise PolicyLoadError(f"cannot load model {source!r}: {exc}") from None


class Policy:
    def __init__(self, config: RLConfig, checkpoint: Path | None = None):
        import transformers
        from transformers import AutoModelForCausalLM, AutoTokenizer

        transformers.logging.set_verbosity_error()  # the live view is the progress report
        transformers.logging.disable_progress_bar()

        self.config = config
        self.device = pick_device(config.device)
        self.tokenizer = _from_pretrained(AutoTokenizer, config.model)
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        dtype = _dtype(config.dtype, self.device)
        full_checkpoint = checkpoint is not None and not config.lora_rank  # a full fine-tune's is the whole model
        model = _from_pretrained(
            AutoModelForCausalLM, str(checkpoint) if full_checkpoint else config.model, dtype=dtype
        )
        if config.lora_rank:
            from peft import LoraConfig, PeftModel, get_peft_model

            if checkpoint is not None:
                model = PeftModel.from_pretrained(model, str(checkpoint), is_trainable=True)
            else:
                lora = LoraConfig(
                    r=config.lora_rank, lora_alpha=config.lora_alpha, target_modules="all-linear", task_type="CAUSAL_LM"
                )
                model = get_peft_model(model, lora)
        self.model: nn.Module = model.to(self.device)
        self.reference: nn.Module | None = None  # the starting policy, for the KL penalty
        if config.kl_beta > 0 and not config.lora_rank:
            self.reference = _from_pretrained(AutoModelForCausalLM, config.model, dtype=dtype).to(self.device).eval()
            self.reference.requires_grad_(False)

    @property
    def end_ids(self) -> set[int]:
        ids = {self.tokenizer.eos_token_id}
        generation = getattr(self.model, "generation_config", None)
        extra = getattr(generation, "eos_token_id", None)
        ids |= set(extra) if isinstance(extra, list) else {extra}
        return {i for i in ids if i is not None}

    def encode_prompt(self, text: str) -> list[int]:
        """Chat models get their chat template; plain language models the text as it is."""
        if getattr(self.tokenizer, "chat_template", None):
            return list(
                self.tokenizer.apply_chat_template(
                    [{"role": "user", "content": text}], add_generation_prompt=True, tokenize=True, return_dict=False
                )
            )
        return list(self.tokenizer(text, add_special_tokens=True)["input_ids"])

    @torch.no_grad()
    def sample(self, prompt: str, count: int, seed: int) -> list[Sample]:
        prompt_ids = self.encode_prompt(prompt)
        window = getattr(self.model.config, "max_position_embeddings", None)
        if window and len(prompt_ids) + self.config.max_new_tokens > window:
            raise ValueError(
                f"a prompt of {len(prompt_ids)} tokens plus --max-new-tokens {self.config.max_new_tokens} exceeds "
                f"the {window}-token context of {self.config.model}: use --prompt goal, fewer --past-ideas, "
                "a smaller --max-new-tokens, or a model with a longer context"
            )
        torch.manual_seed(seed)
        if self.device.type == "cuda":
            torch.cuda.manual_seed_all(seed)
        self.model.eval()
        ids = torch.tensor([prompt_ids], device=self.device)
        out = self.model.generate(
            input_ids=ids,
            attention_mask=torch.ones_like(ids),
            do_sample=True,
            temperature=self.config.temperature,
            top_k=0,
            top_p=1.0,
            repetition_penalty=1.0,  # sample from the policy itself: what the update scores
            max_new_tokens=self.config.max_new_tokens,
            num_return_sequences=count,
            pad_token_id=self.tokenizer.pad_token_id,
            eos_token_id=sorted(self.end_ids),
        )
        samples = []
        for row in out[:, len(prompt_ids) :].tolist():
            completion = []
            for token in row:
                completion.append(token)
                if token in self.end_ids:
                    break
            text = self.tokenizer.decode(completion, skip_special_tokens=True)
            samples.append(Sample(prompt_ids, completion, text))
        return samples

    def token_logprobs(
        self, samples: list[Sample], model: nn.Module | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Log-probabilities of each sample's completion tokens (at the sampling
        temperature), padded: (logprobs [B, T], mask [B, T]). Logits are computed only from
        the first completion position on: over a long prompt and a large vocabulary, the
        prompt's logits would take most of the memory."""
        model = model or self.model
        rows = [s.prompt_ids + s.completion_ids for s in samples]
        width = max(map(len, rows))
        ids = torch.full((len(rows), width), self.tokenizer.pad_token_id, dtype=torch.long, device=self.device)
        attention = torch.zeros_like(ids)
        for i, row in enumerate(rows):
            ids[i, : len(row)] = torch.tensor(row, device=self.device)
            attention[i, : len(row)] = 1
        start = min(len(s.prompt_ids) for s in samples) - 1  # first position that predicts a completion token
        logits = model(input_ids=ids, attention_mask=attention, logits_to_keep=width - start).logits
        logits = logits[:, :-1].float() / self.config.temperature  # positions start .. width-2
        targets = ids[:, start + 1 :]
        logprobs = torch.log_softmax(logits, dim=-1).gather(-1, targets[..., None]).squeeze(-1)
        mask = torch.zeros_like(logprobs)
        for i, s in enumerate(samples):
            first = len(s.prompt_ids) - start - 1
            mask[i, first : first + len(s.completion_ids)] = 1.0
        return logprobs, mask

    def save(self, folder: Path) -> None:
        """The trainable weights: the adapters with LoRA, else the whole model and tokenizer."""
        self.model.save_pretrained(folder)
        if not self.config.lora_rank:
            self.tokenizer.save_pretrained(folder)
