"""Tiny random builds of real MLLM architectures: Qwen2-VL, Qwen2.5-VL and Idefics3 (SmolVLM).

Each builder writes, with ``save_pretrained``, a folder laid out like the hub repository of that
family: the native transformers model class (no ``trust_remote_code``) with random weights at toy
sizes, a byte-level BPE tokenizer of the family's tokenizer class built locally, the family's chat
template and image placeholder tokens, and its image processor (the PIL backend, no torchvision).
So ``deqa.mllm.load(folder)`` exercises the code path a real checkpoint takes, in seconds on a CPU.

The tokenizers are built so that a level word only is a single token in its space-prefixed form
(" good", not "good"), and, for the Qwen families, " excellent" is deliberately left to split into
two tokens (" excel" + "lent") as long words do in real vocabularies: the first sub-token is the
one the level distribution is read from.

Where LoRA goes in each of them is ``deqa.lora.LORA_TARGETS``; the Qwen processors that need no
torchvision are ``deqa.mllm``'s.

Explained in notebook 04 (real backbones).
"""
from __future__ import annotations

from pathlib import Path

import torch
from tokenizers import pre_tokenizers

from .errors import DeqaError
from .levels import LEVELS
from .mllm import image_only_processor_class

# ---------------------------------------------------------------------------------------------
# byte-level BPE vocabulary built from a word list

# words the prompts and answers use; every other text still tokenizes (into single bytes)
_CORPUS_WORDS = (
    "the quality of this image is how would you rate can evaluate describe picture photo "
    "a an and or in on to it its very overall visual score level please answer with one word "
    "what think about system user assistant helpful are You The How Can What Please Rate"
).split()

#: level words that the Qwen builders split into pieces (first piece, rest)
QWEN_SPLIT_WORDS = {" excellent": (" excel", "lent")}

_BYTE_LEVEL = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)


def _byte_form(text: str) -> str:
    """``text`` in the byte-level alphabet (a leading space becomes 'Ġ')."""
    return "".join(piece for piece, _ in _BYTE_LEVEL.pre_tokenize_str(text))


def byte_level_bpe(words, split_words: dict | None = None) -> tuple[dict, list]:
    """A byte-level BPE vocabulary and merge list in which each of ``words`` is one token.

    Starts from the 256 byte symbols; every word adds the merges that build it left to right
    ('Ġ'+'g' -> 'Ġg', 'Ġg'+'o' -> 'Ġgo', ...). Words listed first get the highest-priority
    merges. ``split_words`` maps a word to the pieces it must stay split into: each piece is
    built, the merge joining them is not. Returns (vocab {token: id}, merges [(left, right)]).
    """
    split_words = dict(split_words or {})
    vocab = {symbol: i for i, symbol in enumerate(sorted(pre_tokenizers.ByteLevel.alphabet()))}
    merges, seen = [], set()

    def build(piece: str) -> None:
        current = piece[0]
        for symbol in piece[1:]:
            if (current, symbol) not in seen:
                seen.add((current, symbol))
                merges.append((current, symbol))
            current += symbol
            vocab.setdefault(current, len(vocab))

    for word in words:
        for piece in split_words.get(word, (word,)):
            build(_byte_form(piece))
    return vocab, merges


def _vocab_words(split_words: dict) -> list[str]:
    level_words = [f" {level}" for level in LEVELS]
    other = [w for word in _CORPUS_WORDS for w in (f" {word}", word)]
    return level_words + [w for w in other if w not in level_words and w not in split_words]


# ---------------------------------------------------------------------------------------------
# chat templates (same rendered text as the families' own templates, for image + text turns)

QWEN_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}"
    "{% endfor %}{% endif %}<|im_end|>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

SMOLVLM_CHAT_TEMPLATE = (
    "<|im_start|>"
    "{% for message in messages %}{{ message['role'] | capitalize }}"
    "{% if message['content'] is string %}: {{ message['content'] }}"
    "{% else %}{% if message['content'][0]['type'] == 'image' %}:{% else %}: {% endif %}"
    "{% for part in message['content'] %}"
    "{% if part['type'] == 'image' %}<image>{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}"
    "{% endfor %}{% endif %}<end_of_utterance>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}Assistant:{% endif %}"
)

QWEN_SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>",
                       "<|vision_end|>", "<|image_pad|>", "<|video_pad|>")
IDEFICS3_SPECIAL_TOKENS = (("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<end_of_utterance>",
                            "<fake_token_around_image>", "<image>", "<global-img>")
                           + tuple(f"<row_{r}_col_{c}>" for r in range(1, 7) for c in range(1, 7)))


def _with_specials(vocab: dict, specials) -> dict:
    vocab = dict(vocab)
    for token in specials:
        vocab.setdefault(token, len(vocab))
    return vocab


def qwen_tokenizer():
    """A Qwen2Tokenizer (Qwen's pre-tokenizer regex, byte-level BPE) with " excellent" split in two."""
    from transformers import Qwen2Tokenizer

    vocab, merges = byte_level_bpe(_vocab_words(QWEN_SPLIT_WORDS) + list(QWEN_SPLIT_WORDS),
                                   QWEN_SPLIT_WORDS)
    vocab = _with_specials(vocab, QWEN_SPECIAL_TOKENS)
    tok = Qwen2Tokenizer(vocab=vocab, merges=merges, unk_token=None, eos_token="<|im_end|>",
                         pad_token="<|endoftext|>")
    tok.add_special_tokens({"additional_special_tokens": list(QWEN_SPECIAL_TOKENS[1:])})
    tok.chat_template = QWEN_CHAT_TEMPLATE
    return tok


def idefics3_tokenizer():
    """A GPT2Tokenizer (SmolLM style byte-level BPE) with Idefics3's image tokens; levels one token each."""
    from transformers import GPT2Tokenizer

    vocab, merges = byte_level_bpe(_vocab_words({}))
    vocab = _with_specials(vocab, IDEFICS3_SPECIAL_TOKENS)
    tok = GPT2Tokenizer(vocab=vocab, merges=merges, unk_token="<|endoftext|>", bos_token="<|im_start|>",
                        eos_token="<end_of_utterance>", pad_token="<|im_end|>")
    tok.add_special_tokens({"additional_special_tokens": list(IDEFICS3_SPECIAL_TOKENS[1:])})
    tok.chat_template = SMOLVLM_CHAT_TEMPLATE
    return tok


# ---------------------------------------------------------------------------------------------
# builders

_QWEN_PATCH, _QWEN_MERGE = 8, 2


def _text_sizes(hidden_size: int, layers: int, heads: int, intermediate_size: int) -> dict:
    if hidden_size % heads or (hidden_size // heads) % 2:
        raise DeqaError(f"hidden_size {hidden_size} must split into {heads} heads of even width")
    return dict(hidden_size=hidden_size, intermediate_size=intermediate_size, num_hidden_layers=layers,
                num_attention_heads=heads, num_key_value_heads=max(1, heads // 2), max_position_embeddings=1024)


def _mrope_section(head_dim: int) -> list[int]:
    """Rotary frequencies of one head split over (time, height, width), as Qwen's 16/24/24 of 64."""
    half = head_dim // 2
    t = half // 4
    h = (half - t) // 2
    return [t, h, half - t - h]


def _no_tower_state(tower_state) -> None:
    if tower_state is not None:
        raise DeqaError("a pre-trained CNN tower (tower_state) only fits the llava build; "
                        "the other architectures keep their own vision encoder")


def _check_out_dir(out_dir) -> Path:
    out = Path(out_dir).expanduser().resolve()
    if out.exists() and not out.is_dir():
        raise DeqaError(f"{out_dir}: exists and is not a folder")
    out.mkdir(parents=True, exist_ok=True)
    return out


def qwen_parts(image_size: int, model_type: str, sizes: dict, patch_size: int = _QWEN_PATCH,
               merge_size: int = _QWEN_MERGE):
    """What a random Qwen2-VL / Qwen2.5-VL build needs besides its weights: the tokenizer
    (``qwen_tokenizer``), the image-only processor that resizes every image to ``image_size`` square
    (``patch_size`` px patches merged ``merge_size`` x ``merge_size``), the special-token ids of the
    config, and the text config (``sizes`` + vocabulary and rotary settings). The tiny builders use
    the defaults; the GPU benchmark real dimensions (14 px patches)."""
    from transformers import Qwen2VLImageProcessorPil

    factor = patch_size * merge_size
    if image_size % factor or image_size < factor:
        raise DeqaError(f"image_size must be a multiple of {factor} for these Qwen models, got {image_size}")
    tok = qwen_tokenizer()
    # fixed pixel budget: every (square) image is resized to image_size x image_size
    image_processor = Qwen2VLImageProcessorPil(
        size={"shortest_edge": image_size * image_size, "longest_edge": image_size * image_size},
        patch_size=patch_size, merge_size=merge_size, temporal_patch_size=2)
    processor = image_only_processor_class(model_type)(image_processor=image_processor, tokenizer=tok,
                                                      chat_template=QWEN_CHAT_TEMPLATE)
    ids = {name: tok.convert_tokens_to_ids(token) for name, token in (
        ("image_token_id", "<|image_pad|>"), ("video_token_id", "<|video_pad|>"),
        ("vision_start_token_id", "<|vision_start|>"), ("vision_end_token_id", "<|vision_end|>"))}
    head_dim = sizes["hidden_size"] // sizes["num_attention_heads"]
    text = dict(sizes, vocab_size=len(tok), bos_token_id=None, pad_token_id=tok.pad_token_id,
                eos_token_id=tok.convert_tokens_to_ids("<|im_end|>"),
                rope_parameters={"rope_type": "default", "rope_theta": 10000.0,
                                 "mrope_section": _mrope_section(head_dim)})
    return tok, processor, ids, text


def _save(model, processor, out: Path, return_model: bool):
    model.generation_config.do_sample = False
    model.save_pretrained(out)
    processor.save_pretrained(out)
    return (out, model, processor) if return_model else out


def build_qwen2_vl(out_dir, seed: int = 0, image_size: int = 64, hidden_size: int = 64, layers: int = 2,
                   heads: int = 4, intermediate_size: int = 128, tower_state=None, return_model: bool = False, **_unused):
    """A tiny random Qwen2VLForConditionalGeneration (about 0.3 M parameters) with its processor:
    8 px patches, 2 x 2 merge, so a 64 px image gives 16 image tokens."""
    from transformers import Qwen2VLConfig, Qwen2VLForConditionalGeneration

    _no_tower_state(tower_state)
    out = _check_out_dir(out_dir)
    sizes = _text_sizes(hidden_size, layers, heads, intermediate_size)
    tok, processor, ids, text = qwen_parts(image_size, "qwen2_vl", sizes)
    vision = dict(depth=2, embed_dim=64, hidden_size=text["hidden_size"], num_heads=4, mlp_ratio=2,
                  patch_size=_QWEN_PATCH, spatial_merge_size=_QWEN_MERGE, temporal_patch_size=2)
    config = Qwen2VLConfig(text_config=text, vision_config=vision, **ids)
    torch.manual_seed(seed)
    return _save(Qwen2VLForConditionalGeneration(config).eval(), processor, out, return_model)


def build_qwen2_5_vl(out_dir, seed: int = 0, image_size: int = 64, hidden_size: int = 64, layers: int = 2,
                     heads: int = 4, intermediate_size: int = 128, tower_state=None, return_model: bool = False, **_unused):
    """A tiny random Qwen2_5_VLForConditionalGeneration: window attention (2 x 2 merged patches)
    in vision block 0, full attention in block 1; 16 image tokens for a 64 px image."""
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    _no_tower_state(tower_state)
    out = _check_out_dir(out_dir)
    sizes = _text_sizes(hidden_size, layers, heads, intermediate_size)
    tok, processor, ids, text = qwen_parts(image_size, "qwen2_5_vl", sizes)
    vision = dict(depth=2, hidden_size=64, intermediate_size=128, num_heads=4,
                  out_hidden_size=text["hidden_size"], patch_size=_QWEN_PATCH,
                  spatial_merge_size=_QWEN_MERGE, temporal_patch_size=2,
                  window_size=2 * _QWEN_PATCH * _QWEN_MERGE, fullatt_block_indexes=[1])
    config = Qwen2_5_VLConfig(text_config=text, vision_config=vision, **ids)
    torch.manual_seed(seed)
    return _save(Qwen2_5_VLForConditionalGeneration(config).eval(), processor, out, return_model)


def build_idefics3(out_dir, seed: int = 0, image_size: int = 64, hidden_size: int = 64, layers: int = 2,
                   heads: int = 4, intermediate_size: int = 128, tower_state=None, return_model: bool = False, **_unused):
    """A tiny random Idefics3ForConditionalGeneration (SmolVLM layout: SigLIP-style encoder,
    pixel-shuffle connector, Llama text model), one global image per prompt (no splitting):
    8 px patches shuffled by 2, so a 64 px image gives 16 image tokens."""
    from transformers import Idefics3Config, Idefics3ForConditionalGeneration, Idefics3ImageProcessorPil
    from transformers import Idefics3Processor

    patch, scale = 8, 2
    if image_size % (patch * scale):
        raise DeqaError(f"image_size must be a multiple of {patch * scale} for the tiny Idefics3, got {image_size}")
    _no_tower_state(tower_state)
    out = _check_out_dir(out_dir)
    sizes = _text_sizes(hidden_size, layers, heads, intermediate_size)
    tok = idefics3_tokenizer()
    image_processor = Idefics3ImageProcessorPil(
        do_image_splitting=False, size={"longest_edge": image_size},
        max_image_size={"longest_edge": image_size})
    image_seq_len = (image_size // patch) ** 2 // scale ** 2
    processor = Idefics3Processor(image_processor=image_processor, tokenizer=tok,
                                  image_seq_len=image_seq_len, chat_template=SMOLVLM_CHAT_TEMPLATE)
    text = dict(sizes, model_type="llama", vocab_size=len(tok), pad_token_id=tok.pad_token_id,
                bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id)
    vision = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                  image_size=image_size, patch_size=patch)
    config = Idefics3Config(text_config=text, vision_config=vision, scale_factor=scale,
                            image_token_id=tok.convert_tokens_to_ids("<image>"), pad_token_id=tok.pad_token_id)
    torch.manual_seed(seed)
    return _save(Idefics3ForConditionalGeneration(config).eval(), processor, out, return_model)


BUILDERS = {
    "qwen2_vl": build_qwen2_vl,
    "qwen2_5_vl": build_qwen2_5_vl,
    "idefics3": build_idefics3,
}
