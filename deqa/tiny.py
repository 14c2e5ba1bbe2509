"""The embedded tiny MLLM: a real transformers architecture with random weights, a locally trained
tokenizer and a PIL image processor, written with ``save_pretrained`` so that ``deqa.mllm.load``
reads it exactly as it reads a hub model. Explained in notebook 04 (``04_finetune_mllm``).

``python -m deqa build-tiny OUT_DIR [--arch llava] [--seed 0] [--image-size 64] [--overwrite]``

The default architecture is LLaVA (``LlavaForConditionalGeneration``): a 2-layer Llama language
model and the CNN tower of :mod:`deqa.tower` joined by LLaVA's two-layer projector. Tiny builds of
the other supported architectures (``--arch qwen2_vl``, ...) are in :mod:`deqa.tiny_archs`.
"""
from __future__ import annotations

import argparse
import random
from pathlib import Path

import torch

from .errors import DeqaError
from .levels import LEVELS

# Special tokens of the tiny tokenizer (the image placeholder, padding, begin/end of text, chat turns).
BOS, EOS, PAD, IMAGE = "<|bos|>", "<|end|>", "<|pad|>", "<image>"
ROLE_TOKENS = ("<|system|>", "<|user|>", "<|assistant|>")
SPECIAL_TOKENS = (PAD, BOS, EOS, IMAGE) + ROLE_TOKENS

#: Chat template of the tiny model: ``<|bos|><|user|>\n<image>\nQUESTION<|end|>\n<|assistant|>\n...``.
CHAT_TEMPLATE = (
    "{{- bos_token -}}"
    "{%- for message in messages -%}"
    "{{- '<|' + message['role'] + '|>\n' -}}"
    "{%- if message['content'] is string -%}{{- message['content'] -}}"
    "{%- else -%}{%- for item in message['content'] -%}"
    "{%- if item['type'] == 'image' -%}{{- '<image>\n' -}}"
    "{%- elif item['type'] == 'text' -%}{{- item['text'] -}}{%- endif -%}"
    "{%- endfor -%}{%- endif -%}"
    "{{- '<|end|>\n' -}}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<|assistant|>\n' -}}{%- endif -%}"
)

_WORDS = (
    "the a an image photo picture of is this that what how would you rate quality do think about "
    "it its in on with and or very quite rather not sharp blurry noisy clean bright dark colour "
    "detail contrast compression artefacts scene sky tree house road person light shadow edge "
    "texture low high score level human rating rater mean spread good bad poor fair excellent "
    "I can see there are some many few looks seems overall visible clear soft hard"
).split()


def tiny_corpus(n_sentences: int = 3000, seed: int = 0) -> list[str]:
    """Text the tiny tokenizer is trained on: the prompt and every answer, plus random word salad."""
    from .collate import ANSWER_PREFIX, QUESTION

    rng = random.Random(seed)
    corpus = [QUESTION] * 50
    for level in LEVELS:
        corpus += [f"{ANSWER_PREFIX} {level}."] * 50
    for _ in range(n_sentences):
        words = rng.choices(_WORDS, k=rng.randint(4, 14))
        sentence = " ".join(words)
        corpus.append(sentence[0].upper() + sentence[1:] + rng.choice([".", "?", "!", ","]))
    return corpus


def build_bpe_tokenizer(corpus, specials=SPECIAL_TOKENS, vocab_size: int = 600, chat_template=CHAT_TEMPLATE,
                        bos=BOS, eos=EOS, pad=PAD, image=IMAGE):
    """A byte-level BPE tokenizer trained in memory on ``corpus``, wrapped as a transformers fast
    tokenizer (``PreTrainedTokenizerFast``) with the given special tokens and chat template.

    Words are merged with their leading space (" good"), as in GPT-2-style tokenizers. No BOS is
    added automatically: the chat template writes it.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(specials),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(corpus, trainer)
    extra = [t for t in specials if t not in (bos, eos, pad)]
    kwargs = dict(tokenizer_object=tok, bos_token=bos, eos_token=eos, pad_token=pad)
    if image is not None:
        kwargs["extra_special_tokens"] = {"image_token": image}
        extra = [t for t in extra if t != image]
    fast = PreTrainedTokenizerFast(**kwargs)
    if extra:
        fast.add_special_tokens({"additional_special_tokens": extra}, replace_extra_special_tokens=False)
    fast.padding_side = "left"
    fast.chat_template = chat_template
    return fast


def check_level_tokens(tokenizer) -> list[int]:
    """Ids of the five level words; raises unless each is ONE token in its space-prefixed form."""
    ids = []
    for word in LEVELS:
        enc = tokenizer.encode(" " + word, add_special_tokens=False)
        if len(enc) != 1:
            raise DeqaError(f"tiny tokenizer: level word {word!r} is {len(enc)} tokens, expected 1")
        ids.append(enc[0])
    return ids


def pil_image_processor(image_size: int):
    """A CLIP-style image processor on the PIL backend (no torchvision): square resize to
    ``image_size``, no crop, pixels normalised as :data:`deqa.tower.IMAGE_MEAN` / ``IMAGE_STD``."""
    from transformers import CLIPImageProcessorPil

    from .tower import IMAGE_MEAN, IMAGE_STD

    square = {"height": image_size, "width": image_size}
    return CLIPImageProcessorPil(
        size=square, crop_size=square, do_center_crop=False, image_mean=list(IMAGE_MEAN),
        image_std=list(IMAGE_STD),
    )


def _build_llava(out_dir: Path, seed: int = 0, image_size: int = 64, tower_state=None, return_model: bool = False,
                 hidden_size: int = 128, layers: int = 2, heads: int = 4, intermediate_size: int = 256,
                 vocab_size: int = 600):
    from transformers import LlamaConfig, LlavaConfig, LlavaForConditionalGeneration, LlavaProcessor

    from .tower import QualityCNNConfig

    tokenizer = build_bpe_tokenizer(tiny_corpus(seed=seed), vocab_size=vocab_size)
    check_level_tokens(tokenizer)
    vision = QualityCNNConfig(image_size=image_size, hidden_size=hidden_size)
    text = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=intermediate_size,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=heads,
        max_position_embeddings=512,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        tie_word_embeddings=False,
    )
    config = LlavaConfig(
        vision_config=vision,
        text_config=text,
        image_token_id=tokenizer.convert_tokens_to_ids(IMAGE),
        vision_feature_layer=-1,
        vision_feature_select_strategy="full",
        projector_hidden_act="gelu",
    )
    config.pad_token_id = tokenizer.pad_token_id
    torch.manual_seed(seed)
    model = LlavaForConditionalGeneration(config)
    if tower_state is not None:
        missing, unexpected = model.model.vision_tower.load_state_dict(tower_state, strict=False)
        if missing or unexpected:
            raise DeqaError(f"tower state does not fit the tiny tower: missing {missing}, unexpected {unexpected}")
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.bos_token_id = tokenizer.bos_token_id

    # 64 px / patch 16 -> 4 x 4 = 16 image tokens, the tower's grid; no CLS token to add or drop.
    grid = vision.grid
    if image_size % grid:
        raise DeqaError(f"image size {image_size} is not a multiple of the tower grid {grid}")
    processor = LlavaProcessor(
        image_processor=pil_image_processor(image_size),
        tokenizer=tokenizer,
        patch_size=image_size // grid,
        vision_feature_select_strategy="full",
        num_additional_image_tokens=0,
        chat_template=CHAT_TEMPLATE,
        image_token=IMAGE,
    )
    from .mllm import quiet_transformers

    with quiet_transformers():   # no "Writing model shards" bar in the notebooks
        model.save_pretrained(out_dir)
        processor.save_pretrained(out_dir)
    return (out_dir, model, processor) if return_model else out_dir


def _builders() -> dict:
    """arch name -> builder(out_dir, seed=, image_size=, tower_state=, return_model=, **sizes): the
    embedded LLaVA here, the other architectures in ``deqa.tiny_archs``."""
    from .tiny_archs import BUILDERS

    return {"llava": _build_llava, **BUILDERS}


#: What ``save_pretrained`` of a model, a LoRA adapter or a processor writes: with ``overwrite``
#: these are removed from a non-empty folder before the build, so that no stale file (an old
#: adapter_config.json, another tokenizer's vocab.json, weight shards) changes what the folder loads
#: as. Every other file (notes, a README) stays.
MODEL_FILE_PATTERNS = (
    "config.json", "generation_config.json", "model.safetensors", "model-*.safetensors",
    "model.safetensors.index.json", "pytorch_model*.bin", "pytorch_model.bin.index.json",
    "adapter_config.json", "adapter_model.safetensors", "adapter_model.bin",
    "processor_config.json", "preprocessor_config.json", "video_preprocessor_config.json",
    "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json",
    "vocab.json", "merges.txt", "tokenizer.model", "chat_template.jinja", "chat_template.json",
)


def prepare_out_dir(out_dir, overwrite: bool = False) -> Path:
    """``out_dir`` resolved and created, ready for a build. A non-empty folder is refused unless
    ``overwrite``; with it, the files of ``MODEL_FILE_PATTERNS`` are removed first. A training run
    folder (a model in ``model/``, which ``deqa.mllm.load`` would pick instead) is always refused."""
    from .mllm import _is_model_folder

    out = Path(out_dir).expanduser().resolve()
    if out.exists() and not out.is_dir():
        raise DeqaError(f"{out_dir}: exists and is not a folder")
    if out.is_dir() and any(out.iterdir()):
        if _is_model_folder(out / "model"):
            raise DeqaError(f"{out_dir} holds a training run (a model in model/); choose another folder")
        if not overwrite:
            raise DeqaError(f"{out_dir} is not empty: pass --overwrite to replace the model files in it "
                            "(other files are kept), or choose another folder")
        for pattern in MODEL_FILE_PATTERNS:
            for file in out.glob(pattern):
                if file.is_file() or file.is_symlink():
                    file.unlink()
    out.mkdir(parents=True, exist_ok=True)
    return out


def architectures() -> list[str]:
    """Names accepted by ``build_tiny(arch=...)``."""
    return sorted(_builders())


def build_tiny(out_dir, arch: str = "llava", seed: int = 0, image_size: int = 64, tower_state=None,
               return_model: bool = False, overwrite: bool = True, **sizes):
    """Write a tiny MLLM (model, tokenizer with chat template, image processor) to ``out_dir``.

    ``tower_state``: an optional state dict of a pre-trained :class:`deqa.tower.QualityCNNModel`
    (stage 1) put into the vision tower (LLaVA only). ``sizes`` override the builder's defaults
    (``hidden_size``, ``layers``, ``heads``, ``intermediate_size``; LLaVA also ``vocab_size``).
    ``overwrite`` (``prepare_out_dir``): True (the default here, where the caller names the folder)
    replaces the model files of a non-empty folder; False refuses it, as ``build-tiny`` does
    without ``--overwrite``. Returns the output folder, or ``(folder, model, processor)`` with
    ``return_model=True``.
    """
    builders = _builders()
    if arch not in builders:
        raise DeqaError(f"unknown tiny architecture {arch!r}; choose one of {architectures()}")
    out_dir = prepare_out_dir(out_dir, overwrite=overwrite)
    return builders[arch](out_dir, seed=seed, image_size=image_size, tower_state=tower_state,
                          return_model=return_model, **sizes)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("out_dir", metavar="OUT_DIR", help="folder to write the model into")
    parser.add_argument("--arch", default="llava",
                        help="architecture: llava (default, CNN tower), qwen2_vl, qwen2_5_vl, idefics3")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random weights (default 0)")
    parser.add_argument("--image-size", type=int, default=64, help="input side in pixels (default 64)")
    parser.add_argument("--pretrain-steps", type=int, default=0,
                        help="pre-train the vision tower for this many steps first (stage 1; default 0 = random)")
    parser.add_argument("--overwrite", action="store_true",
                        help="write into a non-empty OUT_DIR, replacing the model files there (other files stay)")


def run(args) -> int:
    prepare_out_dir(args.out_dir, overwrite=args.overwrite)  # refuse before the pre-training
    tower_state = None
    if args.pretrain_steps > 0:
        from .tower import QualityCNNConfig, QualityCNNModel, pretrain_tower

        torch.manual_seed(args.seed)
        tower = QualityCNNModel(QualityCNNConfig(image_size=args.image_size))
        hist = pretrain_tower(tower, steps=args.pretrain_steps, seed=args.seed, size=args.image_size)
        print(f"tower pre-trained: held-out SRCC {hist['srcc_before']:.2f} -> {hist['srcc']:.2f}")
        tower_state = tower.state_dict()
    out = build_tiny(args.out_dir, arch=args.arch, seed=args.seed, image_size=args.image_size,
                     tower_state=tower_state, overwrite=args.overwrite)
    print(f"wrote tiny {args.arch} model to {out}")
    return 0
