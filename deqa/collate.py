"""Turning images into model inputs: the prompt, the level-word tokens and the collator.

The prompt asks ``QUESTION`` about the image in the processor's own chat template; the answer is
``f"{ANSWER_PREFIX} {level}."``. The logits at the position just before the level word give the five
level probabilities (``deqa.mllm.level_logits``). The same code serves the embedded tiny model and
real hub models (LLaVA, Qwen2-VL, Idefics3...): image placeholders are expanded by the processor.
``Collator.files`` makes the same batches from image files, preparing each image once per process
(``deqa.process_cache``), for training and for scoring the same images again.
Explained in notebook 04 (``04_finetune_mllm``).
"""
from __future__ import annotations

import warnings

import numpy as np
import torch

from .errors import DeqaError
from .images import load_image
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
        self._prompts: dict = {}  # question -> its prompt text
        self._rows: dict = {}  # (prompt text, image size) -> (prompt tokens, per-token extras) (``files``)
        self._fingerprint: str | None = None

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
        self._check_levels(levels)
        imgs = [self._square(im) for im in images]
        enc = self._encode(imgs, self._texts(questions, len(imgs)))
        rows, extra_rows, image_part = _split_encoding(enc)
        return self._assemble(rows, extra_rows, image_part, levels)

    def files(self, paths, levels=None, questions=None) -> dict:
        """The batch of the image files ``paths``: bit for bit ``self([load_image(p) for p in paths],
        levels, questions)``, with each image decoded and preprocessed once per process
        (``deqa.process_cache``). The processor's tensors of single images are joined along their
        first dimension and the prompt tokens of an image depend only on its question and size; the
        first batch of every processor is checked against the processor's own batch, and a processor
        whose batches are not such a join (images padded to a common size...) gets the direct path."""
        from .process_cache import IMAGES, settled

        self._check_levels(levels)
        store = self._store_keys(paths) if paths else None
        if store is None:  # nothing to keep, or a missing file: load_image names it
            return self([load_image(p) for p in paths], levels, questions)
        budget, keys = store
        fingerprint = self.fingerprint()
        texts = self._texts(questions, len(paths))
        entries = [IMAGES.get(k) for k in keys]
        # the images not kept, then a kept one for each (prompt, size) whose tokens are not known yet
        decoded = {i: self._square(load_image(paths[i])) for i, e in enumerate(entries) if e is None}
        wanted = {(texts[i], img.size) for i, img in decoded.items()}
        for i, entry in enumerate(entries):
            if entry is not None and (texts[i], entry[0]) not in self._rows and (texts[i], entry[0]) not in wanted:
                decoded[i] = self._square(load_image(paths[i]))
                wanted.add((texts[i], entry[0]))
        if decoded:
            # a processor's first batch is made of single images one by one, and checked below
            made = self._prepare_singles(decoded, texts, alone=fingerprint not in IMAGES.verified)
            if made is None:
                return self._refuse(fingerprint, paths, decoded, levels, texts)
            for i, (entry, nbytes) in made.items():
                if settled(keys[i][2]):
                    IMAGES.put(keys[i], entry, nbytes, budget)
                entries[i] = entry
        image_part = _join([tensors for _, tensors in entries])
        if image_part is None:
            return self._direct(paths, decoded, levels, texts)
        rows, extra_rows = zip(*[self._rows[(text, size)] for text, (size, _) in zip(texts, entries)])
        batch = self._assemble(list(rows), list(extra_rows), image_part, levels)
        if fingerprint not in IMAGES.verified:
            direct = self._direct(paths, decoded, levels, texts)
            if not _same_batch(batch, direct):
                return self._refuse(fingerprint, paths, decoded, levels, texts)
            IMAGES.verified.add(fingerprint)
        return batch

    def prepare_files(self, paths, progress: bool = False, chunk: int = 64) -> bool:
        """Prepare the images of ``paths`` not kept yet into the process's store (``files`` then finds
        them all), as long as all of them fit its budget (images kept for other files make room, least
        recently used first); True when they are all kept. A training run does this for its training
        images: once per process, in large groups, rather than a few in every step of its first runs."""
        from .process_cache import IMAGES, settled
        from .setup import progress as progress_bar

        store = self._store_keys(paths)
        if store is None:
            return False
        budget, fingerprint = store[0], self.fingerprint()
        keys = dict(zip(store[1], paths))
        todo = [(k, p) for k, p in keys.items() if IMAGES.get(k) is None]
        if not todo:
            return True
        if fingerprint not in IMAGES.verified:  # the first batch checks the processor (``files``)
            first = [p for _, p in todo[:chunk]]
            self.files(first, levels=[0] * len(first) if self.train else None)
            todo = [(k, p) for k, p in todo if IMAGES.get(k) is None]
            if fingerprint in IMAGES.refused:
                return False
        bar = progress_bar(total=len(todo), desc="preparing images", unit="img", leave=False, disable=not progress)
        try:
            for start in range(0, len(todo), chunk):
                part = todo[start:start + chunk]
                decoded = {i: self._square(load_image(p)) for i, (_, p) in enumerate(part)}
                made = self._prepare_singles(decoded, [self.prompt_text] * len(part))
                if made is None:
                    return False
                for i, (entry, n) in made.items():
                    if settled(part[i][0][2]):
                        IMAGES.put(part[i][0], entry, n, budget)
                bar.update(len(part))
                if sum(n for _, n in made.values()) * len(keys) / len(part) > budget:
                    return False  # they would not all fit: ``files`` keeps what it can as it goes
        finally:
            bar.close()
        return True

    def _store_keys(self, paths):
        """``(budget in bytes, the store key of every path)`` when the images of ``paths`` may be kept in
        the process's store; None when they may not (the store is off, the processor's settings cannot
        be written out or its batches were refused) or a file cannot be examined."""
        from .process_cache import IMAGES, file_key, image_budget

        budget, fingerprint = image_budget(), self.fingerprint()
        if budget <= 0 or fingerprint is None or fingerprint in IMAGES.refused:
            return None
        try:
            return budget, [(fingerprint, self.square, file_key(p)) for p in paths]
        except OSError:
            return None

    def _refuse(self, fingerprint: str, paths, decoded: dict, levels, texts) -> dict:
        """Never assemble this processor's batches from single images again (in this process); the
        batch made directly."""
        from .process_cache import IMAGES

        IMAGES.refused.add(fingerprint)
        warnings.warn(f"{type(self.processor).__name__}: its batches are not joins of single images' "
                      "tensors; every batch is prepared from the image files", stacklevel=3)
        return self._direct(paths, decoded, levels, texts)

    def fingerprint(self) -> str | None:
        """What the tensors of an image depend on besides the file: the processor's classes and its
        image processor's settings (and the padding colour); None when the settings cannot be
        written out (then ``files`` prepares every batch directly)."""
        if self._fingerprint is None:
            ip = getattr(self.processor, "image_processor", None)
            try:
                settings = ip.to_json_string()
            except Exception:  # no image processor, or settings that do not serialise
                return None
            self._fingerprint = "\n".join((type(self.processor).__qualname__, type(ip).__qualname__, settings,
                                           repr(self.fill)))
        return self._fingerprint

    def _check_levels(self, levels) -> None:
        if self.train and levels is None:
            raise DeqaError("Collator(train=True) needs the level index of every image")

    def _square(self, img):
        return pad_to_square(img, self.fill) if self.square else img.convert("RGB")

    def _texts(self, questions, n: int) -> list[str]:
        """The prompt of every image (rendered once per question)."""
        if questions is None:
            return [self.prompt_text] * n
        texts = []
        for q in questions:
            text = self._prompts.get(q)
            if text is None:
                text = self._prompts[q] = self.prompt(q)
            texts.append(text)
        return texts

    def _encode(self, imgs, texts):
        return self.processor(text=texts, images=imgs, padding=True, return_tensors="pt", add_special_tokens=False)

    def _direct(self, paths, decoded: dict, levels, texts) -> dict:
        imgs = [decoded[i] if i in decoded else self._square(load_image(p)) for i, p in enumerate(paths)]
        rows, extra_rows, image_part = _split_encoding(self._encode(imgs, texts))
        return self._assemble(rows, extra_rows, image_part, levels)

    def _prepare_singles(self, decoded: dict, texts, alone: bool = False) -> dict | None:
        """``{i: ((size, tensors), nbytes)}`` for the decoded images: one processor call per image
        size (per image when ``alone``), its tensors split evenly along the first dimension
        (same-size images give same-size tensors), and each (prompt, size)'s prompt tokens
        remembered. None when the processor's output cannot be split so, or when one prompt and size
        gave two token rows."""
        groups: dict = {}
        for i, img in decoded.items():
            groups.setdefault(i if alone else img.size, []).append(i)
        made = {}
        for idx in groups.values():
            size = decoded[idx[0]].size
            rows, extra_rows, image_part = _split_encoding(self._encode([decoded[i] for i in idx],
                                                                       [texts[i] for i in idx]))
            n = len(idx)
            if not image_part or any(not torch.is_tensor(v) or v.ndim == 0 or v.shape[0] % n
                                     for v in image_part.values()):
                return None
            for j, i in enumerate(idx):
                tensors = {}
                for k, v in image_part.items():
                    share = v.shape[0] // n
                    tensors[k] = v[j * share:(j + 1) * share].clone()
                known = self._rows.setdefault((texts[i], size), (rows[j], extra_rows[j]))
                if known[0] != rows[j] or not _same_extra(known[1], extra_rows[j]):
                    return None
                made[i] = ((size, tensors), sum(t.numel() * t.element_size() for t in tensors.values()))
        return made

    def _assemble(self, rows, extra_rows, image_part: dict, levels) -> dict:
        """The batch from each image's prompt tokens (+ per-token extras) and the joined image tensors."""
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

        return self._pad(image_part, seqs, label_rows, level_pos_in_row, extra_rows)

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

    def _pad(self, image_part, seqs, label_rows, level_pos_in_row, extra_rows) -> dict:
        """Left-pad the rows into the batch tensors (and the per-token extras some processors add)."""
        T = max(len(s) for s in seqs)
        B = len(seqs)
        offsets = [T - len(seq) for seq in seqs]
        input_ids = torch.tensor([[self.pad_id] * off + seq for off, seq in zip(offsets, seqs)], dtype=torch.long)
        attention = torch.tensor([[0] * off + [1] * (T - off) for off in offsets], dtype=torch.long)
        level_pos = torch.tensor([off + pos for off, pos in zip(offsets, level_pos_in_row)], dtype=torch.long)
        labels = None
        if self.train:
            labels = torch.tensor([[IGNORE_INDEX] * off + row for off, row in zip(offsets, label_rows)],
                                  dtype=torch.long)
        extra = {k: torch.zeros((B, T), dtype=v.dtype) for k, v in extra_rows[0].items()}
        for i, off in enumerate(offsets):
            for k, vals in extra_rows[i].items():
                extra[k][i, off : off + len(vals)] = vals

        batch = dict(image_part)
        batch.update(extra)
        batch["input_ids"] = input_ids
        batch["attention_mask"] = attention
        if self.with_position_ids:
            batch["position_ids"] = (attention.cumsum(-1) - 1).clamp(min=0)
        batch["level_pos"] = level_pos
        if self.train:
            batch["labels"] = labels
        return batch


def _split_encoding(enc):
    """A processor's batch -> (each row's prompt tokens without padding, each row's per-token extras
    as 1-D tensors, the other entries: the image data)."""
    mask = enc["attention_mask"].bool()
    rows = [ids[m].tolist() for ids, m in zip(enc["input_ids"], mask)]
    extra_keys = [k for k, v in enc.items() if k not in _TEXT_KEYS and torch.is_tensor(v)
                  and v.shape == enc["input_ids"].shape]
    extra_rows = [{k: enc[k][i][mask[i]].clone() for k in extra_keys} for i in range(len(rows))]
    image_part = {k: v for k, v in enc.items() if k not in _TEXT_KEYS and k not in extra_keys}
    return rows, extra_rows, image_part


def _same_extra(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(a[k].dtype == b[k].dtype and torch.equal(a[k], b[k]) for k in a)


def _join(parts: list[dict]) -> dict | None:
    """The single images' tensors joined along the first dimension, as a processor batches them; None
    when they do not agree in names, dtypes and trailing shapes."""
    first = parts[0]
    for other in parts[1:]:
        if other.keys() != first.keys() or any(other[k].dtype != v.dtype or other[k].shape[1:] != v.shape[1:]
                                               for k, v in first.items()):
            return None
    return {k: torch.cat([p[k] for p in parts]) for k in first}


def _same_batch(a: dict, b: dict) -> bool:
    """Two batches of tensors with the same entries, dtypes, shapes and values."""
    return list(a) == list(b) and all(torch.is_tensor(v) and torch.is_tensor(b[k]) and v.dtype == b[k].dtype
                                      and v.shape == b[k].shape and torch.equal(v, b[k]) for k, v in a.items())


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
