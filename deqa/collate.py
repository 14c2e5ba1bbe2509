"""Turning images into model inputs: the prompt, the level-word tokens and the collator.

The prompt asks ``QUESTION`` about the image in the processor's own chat template; the answer is
``f"{ANSWER_PREFIX} {level}."``. The logits at the position just before the level word give the five
level probabilities (``deqa.mllm.level_logits``). The same code serves the embedded tiny model and
real hub models (LLaVA, Qwen2-VL, Idefics3...): image placeholders are expanded by the processor.
Explained in notebook 04 (``04_finetune_mllm``).
"""
from __future__ import annotations

import warnings

import numpy as np
import torch

from .errors import DeqaError
from .levels import LEVELS
from .losses import IGNORE_INDEX

#: the ten questions of the published training prompts; one is drawn per image and epoch in training
QUESTIONS = (
    "What do you think about the quality of this image?",
    "Can you rate the quality of this picture?",
    "Can you judge the quality of this image?",
    "How would you rate the quality of this image?",
    "How would you judge the quality of this image?",
    "What is your quality rating for this image?",
    "What's your opinion on the quality of this picture?",
    "Rate the quality of this image.",
    "Could you evaluate the quality of this image?",
    "How do you assess the quality of this image?",
)
#: the one question of scoring (the published scorer's), and of training with a fixed question
QUESTION = QUESTIONS[3]
ANSWER_PREFIX = "The quality of the image is"

# processor outputs that are per-token (padded with the text); everything else is image data
_TEXT_KEYS = ("input_ids", "attention_mask")
#: entries of a collated batch that are not model inputs (the training targets travel with the batch)
NOT_MODEL_INPUTS = ("level_pos", "labels", "target", "mu", "sigma")

# ---------------------------------------------------------------------------------------------
# level tokens

_ALTERNATIVES = "e.g. 'bad poor fair good excellent' or 'terrible low medium high perfect'"


def _tokenizer_of(tok_or_processor):
    return getattr(tok_or_processor, "tokenizer", tok_or_processor)


def _word_tokens(tokenizer, word: str) -> list[int]:
    """Token ids of ``word`` as it appears right after the answer prefix (leading space)."""
    prefix = tokenizer.encode(ANSWER_PREFIX, add_special_tokens=False)
    full = tokenizer.encode(f"{ANSWER_PREFIX} {word}", add_special_tokens=False)
    if full[: len(prefix)] == prefix and len(full) > len(prefix):
        return full[len(prefix):]
    return tokenizer.encode(" " + word, add_special_tokens=False)


def level_token_ids(tokenizer, words=LEVELS) -> list[int]:
    """Ids of the five level words (bad..excellent) in their space-prefixed form.

    A word that splits into several tokens is represented by its first sub-token; the five ids must
    be distinct and known to the tokenizer, else :class:`DeqaError` names the offending word.
    """
    tokenizer = _tokenizer_of(tokenizer)
    unk = getattr(tokenizer, "unk_token_id", None)
    ids, split = [], []
    for word in words:
        toks = _word_tokens(tokenizer, word)
        if not toks:
            raise DeqaError(f"level word {word!r} gives no token with this tokenizer; choose other words ({_ALTERNATIVES})")
        if unk is not None and unk in toks:
            raise DeqaError(f"level word {word!r} is unknown to this tokenizer (maps to the unknown token); "
                            f"choose other words ({_ALTERNATIVES})")
        if len(toks) > 1:
            split.append(word)
        ids.append(int(toks[0]))
    for i, word in enumerate(words):
        for j in range(i):
            if ids[i] == ids[j]:
                piece = tokenizer.convert_ids_to_tokens(ids[i])
                raise DeqaError(f"level word {word!r} starts with the same token {piece!r} as {words[j]!r}: the five "
                                f"level tokens must be distinct; choose other words ({_ALTERNATIVES})")
    if split:
        warnings.warn(f"level words {split} are several tokens each; their first sub-token stands for them",
                      stacklevel=2)
    return ids


# ---------------------------------------------------------------------------------------------
# images and prompts


def pad_to_square(img, fill=None):
    """Pad a PIL image to a square, centred (as the reference does before resizing).

    ``fill``: RGB colour of the padding; by default the image's mean colour. The collator passes the
    processor's normalisation mean, which maps the padding to zero as the reference does.
    """
    from PIL import Image

    img = img.convert("RGB")
    w, h = img.size
    if w == h:
        return img
    if fill is None:
        fill = tuple(int(round(c)) for c in np.asarray(img, dtype=np.float64).reshape(-1, 3).mean(0))
    side = max(w, h)
    out = Image.new("RGB", (side, side), tuple(int(c) for c in fill))
    out.paste(img, ((side - w) // 2, (side - h) // 2))
    return out


def _mean_fill(processor):
    mean = getattr(getattr(processor, "image_processor", None), "image_mean", None)
    if mean is None or len(mean) != 3:
        return None
    return tuple(int(round(255 * float(m))) for m in mean)


def _messages(answer: str | None, question: str = QUESTION):
    msgs = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": question}]}]
    if answer is not None:
        msgs.append({"role": "assistant", "content": [{"type": "text", "text": answer}]})
    return msgs


def _render(processor, messages, add_generation_prompt: bool) -> str:
    text = processor.apply_chat_template(messages, add_generation_prompt=add_generation_prompt, tokenize=False)
    return text[0] if isinstance(text, list) else text


class Collator:
    """Images (+ training levels) -> a batch of model inputs, left padded.

    The prompt is the processor's chat template for one image and a question (``QUESTION``, or one
    per image: ``questions``), followed by ``ANSWER_PREFIX``; with ``train=True`` the level word and
    the rest of the answer turn follow. Keys: the processor's model inputs (``input_ids``,
    ``attention_mask``, ``pixel_values``, and any arch-specific ones), ``level_pos`` (B,) = the
    position whose logits predict the level token, and with ``train=True`` ``labels`` (B, T), already
    shifted (``logits[:, t]`` predicts ``labels[:, t]``), IGNORE_INDEX on the prompt and the padding.
    The level position is IGNORE_INDEX too (its target is the soft label, through the KL), unless
    ``level_in_ce``: then the level word is one more answer token of the cross-entropy (Q-Align's
    one-hot training). Explained in notebook 04.
    """

    def __init__(self, processor, level_ids=None, train: bool = False, square: bool = True,
                 level_in_ce: bool = False):
        self.processor = processor
        self.tokenizer = _tokenizer_of(processor)
        self.level_ids = list(level_ids) if level_ids is not None else level_token_ids(self.tokenizer)
        if len(self.level_ids) != len(LEVELS):
            raise DeqaError(f"Collator: expected {len(LEVELS)} level ids, got {len(self.level_ids)}")
        self.train = train
        self.level_in_ce = level_in_ce
        self.square = square
        self.fill = _mean_fill(processor)
        self.pad_id = self.tokenizer.pad_token_id
        if self.pad_id is None:
            self.pad_id = self.tokenizer.eos_token_id if self.tokenizer.eos_token_id is not None else 0
        self.prompt_text = self.prompt(QUESTION)
        self.prefix_ids = self.tokenizer.encode(ANSWER_PREFIX, add_special_tokens=False)
        self.suffix_ids = {k: self._suffix_ids(k) for k in range(len(LEVELS))} if train else {}
        # Left padding shifts the positions of the shorter rows unless the model is told them. Models
        # with multimodal rotary positions (Qwen-VL) derive them from the attention mask themselves.
        self.with_position_ids = "qwen" not in type(processor).__name__.lower()

    def prompt(self, question: str) -> str:
        """The chat template's text of the user turn (an image and ``question``) and the assistant's start."""
        return _render(self.processor, _messages(None, question), add_generation_prompt=True)

    def _suffix_ids(self, level: int) -> list[int]:
        """Tokens after the level token: the word's other sub-tokens when it splits (" excel" + "lent"),
        then the rest of the answer and the template's end of turn. All of them are trained by CE."""
        word = LEVELS[level]
        answer = f"{ANSWER_PREFIX} {word}."
        full = _render(self.processor, _messages(answer), add_generation_prompt=False)
        at = full.rfind(answer)
        if at < 0:
            raise DeqaError("the chat template does not reproduce the answer text; cannot locate the level token")
        rest = full[at + len(answer) - 1:]  # "." + end of turn
        word_ids = _word_tokens(self.tokenizer, word)
        tail = word_ids[1:] if word_ids and word_ids[0] == self.level_ids[level] else []
        return tail + self.tokenizer.encode(rest, add_special_tokens=False)

    def __call__(self, images, levels=None, questions=None) -> dict:
        if self.train and levels is None:
            raise DeqaError("Collator(train=True) needs the level index of every image")
        imgs = [pad_to_square(im, self.fill) if self.square else im.convert("RGB") for im in images]
        texts = [self.prompt_text] * len(imgs) if questions is None else [self.prompt(q) for q in questions]
        enc = self.processor(text=texts, images=imgs, padding=True, return_tensors="pt", add_special_tokens=False)
        rows = [ids[mask.bool()].tolist() for ids, mask in zip(enc["input_ids"], enc["attention_mask"])]
        extra_tok_keys = [k for k, v in enc.items() if k not in _TEXT_KEYS and torch.is_tensor(v)
                          and v.shape == enc["input_ids"].shape]
        extra_rows = {k: [enc[k][i][enc["attention_mask"][i].bool()].tolist() for i in range(len(imgs))]
                      for k in extra_tok_keys}

        seqs, label_rows, level_pos_in_row = [], [], []
        for i, row in enumerate(rows):
            prompt = row + self.prefix_ids
            if self.train:
                level = int(levels[i])
                seq = prompt + [self.level_ids[level]] + self.suffix_ids[level]
                label_rows.append(self._labels(seq, first=len(row), level_pos=len(prompt) - 1))
            else:
                seq = prompt
            seqs.append(seq)
            level_pos_in_row.append(len(prompt) - 1)

        return self._pad(enc, seqs, label_rows, level_pos_in_row, extra_tok_keys, extra_rows)

    def _labels(self, seq: list[int], first: int, level_pos: int) -> list[int]:
        """Shifted labels: the logits at t predict token t + 1, for every answer token from the first
        prefix token (predicted by the prompt's last token) on; the level position is left out (its
        target is the soft label) unless ``level_in_ce``."""
        lab = [IGNORE_INDEX] * len(seq)
        for t in range(first - 1, len(seq) - 1):
            lab[t] = seq[t + 1]
        if not self.level_in_ce:
            lab[level_pos] = IGNORE_INDEX
        return lab

    def _pad(self, enc, seqs, label_rows, level_pos_in_row, extra_tok_keys, extra_rows) -> dict:
        """Left-pad the rows into the batch tensors (and the per-token extras some processors add)."""
        T = max(len(s) for s in seqs)
        B = len(seqs)
        input_ids = torch.full((B, T), self.pad_id, dtype=torch.long)
        attention = torch.zeros((B, T), dtype=torch.long)
        level_pos = torch.empty(B, dtype=torch.long)
        labels = torch.full((B, T), IGNORE_INDEX, dtype=torch.long) if self.train else None
        extra = {k: torch.zeros((B, T), dtype=enc[k].dtype) for k in extra_tok_keys}
        for i, seq in enumerate(seqs):
            off = T - len(seq)
            input_ids[i, off:] = torch.tensor(seq)
            attention[i, off:] = 1
            level_pos[i] = off + level_pos_in_row[i]
            if self.train:
                labels[i, off:] = torch.tensor(label_rows[i])
            for k in extra_tok_keys:
                vals = extra_rows[k][i]
                extra[k][i, off : off + len(vals)] = torch.tensor(vals, dtype=enc[k].dtype)

        batch = {k: v for k, v in enc.items() if k not in _TEXT_KEYS and k not in extra_tok_keys}
        batch.update(extra)
        batch["input_ids"] = input_ids
        batch["attention_mask"] = attention
        if self.with_position_ids:
            batch["position_ids"] = (attention.cumsum(-1) - 1).clamp(min=0)
        batch["level_pos"] = level_pos
        if self.train:
            batch["labels"] = labels
        return batch


def model_inputs(batch: dict, device=None, dtype=None) -> dict:
    """The entries of a collated batch that go into ``model(**...)`` (not ``NOT_MODEL_INPUTS``), moved
    to ``device``; floating point inputs (pixel values) cast to ``dtype`` when given (a bf16 model)."""
    out = {}
    for k, v in batch.items():
        if k in NOT_MODEL_INPUTS:
            continue
        if torch.is_tensor(v):
            if dtype is not None and v.is_floating_point():
                v = v.to(dtype)
            if device is not None:
                v = v.to(device)
        out[k] = v
    return out
