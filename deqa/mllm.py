"""Loading an MLLM and reading the five level logits out of one forward pass.

The same code serves the embedded tiny model and real hub models (LLaVA, Qwen2-VL, Qwen2.5-VL,
Idefics3...): a hub id, a local model folder, a LoRA adapter folder and a training run folder load
the same way. Explained in notebook 04 (``04_finetune_mllm``).
"""
from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
from pathlib import Path

import torch
from safetensors import SafetensorError

from .collate import model_inputs
from .errors import DeqaError, first_line

#: above this many parameters a model counts as a "real" pre-trained MLLM: LoRA, a small learning rate
#: and gradient checkpointing by default in training, a progress bar when its weights load
LARGE_MODEL_PARAMS = 100_000_000

# ---------------------------------------------------------------------------------------------
# loading


def _is_model_folder(p: Path) -> bool:
    return p.is_dir() and ((p / "config.json").is_file() or (p / "adapter_config.json").is_file())


def _resolve_local(name_or_path) -> Path | None:
    """The local folder meant by ``name_or_path``, or None when it is not a local path."""
    p = Path(str(name_or_path)).expanduser()
    if p.exists():
        p = p.resolve()
        if not p.is_dir():
            raise DeqaError(f"model path {name_or_path} is a file, expected a model folder")
        # a training run folder keeps the final model in RUN_DIR/model (its own config.json is the
        # training configuration, not a model's)
        if _is_model_folder(p / "model"):
            return p / "model"
        if not _is_model_folder(p):
            raise DeqaError(f"model folder {name_or_path} has no config.json, adapter_config.json or model/")
        return p
    text = str(name_or_path)
    first_part = Path(text).parts[0] if Path(text).parts else text
    looks_local = (text.startswith((".", "/", "~")) or text.count("/") > 1 or "\\" in text
                   or ("/" in text and Path(first_part).is_dir()))
    if looks_local:
        raise DeqaError(f"model path {name_or_path} does not exist")
    return None


def _processor_kwargs(config) -> dict:
    """The tiny model's images are prepared with PIL (as in its pre-training) on every machine, also
    where torchvision is installed and would otherwise be chosen."""
    vision = getattr(config, "vision_config", None)
    return {"backend": "pil"} if getattr(vision, "model_type", None) == "deqa_cnn" else {}


def _load_processor(source: str, config):
    """The processor of ``source``, the embedded model's with its PIL backend (``load_processor``)."""
    return load_processor(source, **_processor_kwargs(config))


def load(name_or_path, dtype=None, device="cpu", attn_implementation=None):
    """Load an MLLM and its processor from a hub id, a local folder or a training run folder.

    A run folder (``RUN_DIR/model``) and a LoRA adapter folder (``adapter_config.json``: the base
    model it names, then the adapter through peft) are recognised. Returns ``(model, processor)``
    with the model in eval mode on ``device``. A missing path raises :class:`DeqaError`.
    """
    from . import tower  # noqa: F401  (registers the tiny CNN tower with the Auto classes)

    local = _resolve_local(name_or_path)
    if local is None:
        check_hub_id(str(name_or_path))
    source = str(local) if local is not None else str(name_or_path)
    kwargs = {}
    if dtype is not None:
        kwargs["dtype"] = getattr(torch, dtype) if isinstance(dtype, str) and dtype != "auto" else dtype
    if attn_implementation is not None:
        kwargs["attn_implementation"] = attn_implementation

    adapter = local is not None and (local / "adapter_config.json").is_file()
    # bytes of the weight files against the parameters of a large model in 16 bits
    small = (local is not None
             and sum(f.stat().st_size for f in local.glob("*.safetensors")) < 2 * LARGE_MODEL_PARAMS)
    with quiet_transformers(small):  # no "Loading weights" bar for the tiny models
        model, processor = _from_pretrained(name_or_path, local, source, adapter, kwargs)
    tok = getattr(processor, "tokenizer", processor)
    tok.padding_side = "left"
    model.to(device)
    model.eval()
    return model, processor


@contextlib.contextmanager
def quiet_transformers(quiet: bool = True):
    """Switch off transformers' progress bars (weight loading and saving) inside the block."""
    from transformers.utils import logging as hf_logging

    was_on = hf_logging.is_progress_bar_enabled()
    if quiet:
        hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if quiet and was_on:
            hf_logging.enable_progress_bar()


def _from_pretrained(name_or_path, local, source, adapter, kwargs):
    from transformers import AutoModelForImageTextToText

    try:
        if adapter:
            from peft import PeftModel

            base_name = json.loads((local / "adapter_config.json").read_text()).get("base_model_name_or_path")
            if not base_name:
                raise DeqaError(f"adapter {local} does not name its base model (base_model_name_or_path)")
            base_local = _resolve_local(base_name)
            if base_local is None:
                check_hub_id(base_name)
            base_source = str(base_local) if base_local is not None else base_name
            base = AutoModelForImageTextToText.from_pretrained(base_source, **kwargs)
            model = PeftModel.from_pretrained(base, str(local))
            has_processor = any((local / f).is_file() for f in ("processor_config.json", "preprocessor_config.json",
                                                                 "tokenizer_config.json"))
            processor = _load_processor(str(local) if has_processor else base_source, base.config)
        else:
            model = AutoModelForImageTextToText.from_pretrained(source, **kwargs)
            processor = _load_processor(source, model.config)
    except DeqaError:
        raise
    except (OSError, ValueError, SafetensorError) as exc:  # missing or damaged files, an unknown config
        where = "local folder" if local is not None else "hub id (and no such local folder)"
        first = first_line(exc)
        if isinstance(exc, SafetensorError):
            first = f"a weight file is damaged or truncated ({first})"
        raise DeqaError(f"cannot load model {name_or_path} as a {where}: {first}") from exc
    return model, processor


def check_hub_id(name: str) -> None:
    """Fail fast, with one line, for a model that is neither a local folder nor loadable from the hub:
    not in the local Hugging Face cache while offline mode (``HF_HUB_OFFLINE=1``) is on, or while the
    hub cannot be reached (otherwise the download retries for about a minute before failing)."""
    from huggingface_hub import constants, try_to_load_from_cache

    try:
        cached = any(isinstance(try_to_load_from_cache(name, f), str) for f in ("config.json", "adapter_config.json"))
    except ValueError:
        cached = False
    if cached:
        return
    if constants.HF_HUB_OFFLINE:
        raise DeqaError(f"model {name} is not a local folder, and it is not in the Hugging Face cache "
                        "while offline mode (HF_HUB_OFFLINE) is on")
    if not hub_reachable(constants.ENDPOINT):
        raise DeqaError(f"model {name} is not a local folder, not in the Hugging Face cache, and "
                        f"{constants.ENDPOINT} cannot be reached: give a local model folder or download it first")


def hub_reachable(endpoint: str, timeout: float = 3.0) -> bool:
    """Whether a TCP connection to ``endpoint``'s host opens within ``timeout`` seconds (name lookup
    included). True when a proxy is configured: only the download itself can tell then."""
    from urllib.parse import urlsplit

    if any(os.environ.get(v) for v in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return True
    url = urlsplit(endpoint)
    if not url.hostname:
        return True
    port = url.port or (443 if url.scheme == "https" else 80)
    result = []

    def connect() -> None:
        try:
            socket.create_connection((url.hostname, port), timeout=timeout).close()
            result.append(True)
        except OSError:
            result.append(False)

    thread = threading.Thread(target=connect, daemon=True)
    thread.start()
    thread.join(timeout + 1.0)  # a name lookup does not honour the socket timeout
    return bool(result and result[0])


# ---------------------------------------------------------------------------------------------
# processors; the Qwen families' without a video processor (transformers builds the video processor eagerly and
# it needs torchvision; image-only use does not)

def _image_only_class(base):
    from transformers.processing_utils import ProcessorMixin

    def __init__(self, image_processor=None, tokenizer=None, chat_template=None, **kwargs):
        self.image_token = getattr(tokenizer, "image_token", None) or "<|image_pad|>"
        self.video_token = getattr(tokenizer, "video_token", None) or "<|video_pad|>"
        self.image_token_id = tokenizer.convert_tokens_to_ids(self.image_token)
        self.video_token_id = tokenizer.convert_tokens_to_ids(self.video_token)
        ProcessorMixin.__init__(self, image_processor, tokenizer, chat_template=chat_template)

    def save_pretrained(self, save_directory, *args, **kwargs):
        result = base.save_pretrained(self, save_directory, *args, **kwargs)
        _record_native_processor(Path(save_directory), base.__name__)
        return result

    doc = (f"{base.__name__} for images and text only: no video processor, so no torchvision. "
           f"Saved under the name {base.__name__}, so the folder also loads natively.")
    return type(f"{base.__name__}ImageOnly", (base,), {"__init__": __init__, "save_pretrained": save_pretrained,
                                                        "__doc__": doc})


_IMAGE_ONLY: dict = {}


def image_only_processor_class(model_type: str):
    """The image-only processor class for ``model_type`` ('qwen2_vl' or 'qwen2_5_vl'), else None."""
    if model_type not in ("qwen2_vl", "qwen2_5_vl"):
        return None
    if model_type not in _IMAGE_ONLY:
        from transformers import Qwen2_5_VLProcessor, Qwen2VLProcessor

        base = Qwen2VLProcessor if model_type == "qwen2_vl" else Qwen2_5_VLProcessor
        _IMAGE_ONLY[model_type] = _image_only_class(base)
    return _IMAGE_ONLY[model_type]


_QWEN_PROCESSORS = {"Qwen2VLProcessor": "qwen2_vl", "Qwen2VLProcessorImageOnly": "qwen2_vl",
                    "Qwen2_5_VLProcessor": "qwen2_5_vl", "Qwen2_5_VLProcessorImageOnly": "qwen2_5_vl"}


def _model_type_for_processor(name_or_path):
    """model_type whose processor ``name_or_path`` holds: from the processor class a local folder
    names (a LoRA adapter folder has no config.json), else from the model config."""
    from transformers import AutoConfig

    local = Path(str(name_or_path)).expanduser()
    if local.is_dir():
        for name in ("processor_config.json", "tokenizer_config.json"):
            file = local / name
            if file.is_file():
                processor_class = json.loads(file.read_text()).get("processor_class")
                if processor_class in _QWEN_PROCESSORS:
                    return _QWEN_PROCESSORS[processor_class]
        if not (local / "config.json").is_file():
            return None
    try:
        return AutoConfig.from_pretrained(str(name_or_path)).model_type
    except (OSError, ValueError):
        return None


def load_processor(name_or_path, **kwargs):
    """``AutoProcessor.from_pretrained``, except for Qwen2-VL / Qwen2.5-VL when torchvision is
    missing: then the image-only processor is built from the same folder (tokenizer, PIL image
    processor, chat template). Works for a hub id, a model folder and a LoRA adapter folder."""
    from transformers import AutoProcessor
    from transformers.utils import is_torchvision_available

    if not is_torchvision_available():
        image_only = image_only_processor_class(_model_type_for_processor(name_or_path))
        if image_only is not None:
            return image_only.from_pretrained(str(name_or_path), **kwargs)
    return AutoProcessor.from_pretrained(str(name_or_path), **kwargs)


def _record_native_processor(out_dir: Path, native: str) -> None:
    """Name the library's own processor class and a matching video processor in
    ``processor_config.json``, as a hub folder does, so that where torchvision is installed the
    folder also loads through ``AutoProcessor``."""
    config_file = out_dir / "processor_config.json"
    config = json.loads(config_file.read_text())
    config["processor_class"] = native
    image = config["image_processor"]
    config["video_processor"] = {
        "video_processor_type": "Qwen2VLVideoProcessor",
        **{key: image[key] for key in ("patch_size", "temporal_patch_size", "merge_size", "size",
                                       "image_mean", "image_std") if key in image},
    }
    config_file.write_text(json.dumps(config, indent=2) + "\n")
    tokenizer_file = out_dir / "tokenizer_config.json"
    if tokenizer_file.is_file():
        tok_config = json.loads(tokenizer_file.read_text())
        if "processor_class" in tok_config:
            tok_config["processor_class"] = native
            tokenizer_file.write_text(json.dumps(tok_config, indent=2, ensure_ascii=False) + "\n")


def level_logits(model, batch: dict) -> torch.Tensor:
    """(B, V) logits at each row's ``level_pos``, from one forward pass.

    When every row's level position is the last one (left-padded scoring batches), only the last
    position's logits are computed (``logits_to_keep=1``); otherwise only the distinct level positions.
    """
    first = next(model.parameters())
    device = first.device
    inputs = model_inputs(batch, device=device, dtype=getattr(model, "dtype", first.dtype))
    level_pos = batch["level_pos"].to(device)
    T = inputs["input_ids"].shape[1]
    if bool((level_pos == T - 1).all()):
        logits = model(**inputs, logits_to_keep=1).logits[:, -1]
    else:
        keep, where = torch.unique(level_pos, return_inverse=True)
        logits = model(**inputs, logits_to_keep=keep).logits  # (B, K, V)
        logits = logits[torch.arange(len(level_pos), device=device), where]
    return logits


def set_max_pixels(processor, max_pixels: int) -> None:
    """Cap the pixels per image of a processor that resizes by pixel count (Qwen2-VL, Qwen2.5-VL):
    fewer pixels, fewer visual tokens, less memory. Processors that resize to a fixed size (LLaVA's
    CLIP, the embedded model) refuse with a clear error. Used by ``--max-pixels`` (notebook 04)."""
    ip = getattr(processor, "image_processor", None)
    size = getattr(ip, "size", None)
    keys = size.keys() if isinstance(size, dict) else vars(size) if size is not None else {}
    if "longest_edge" not in keys or "shortest_edge" not in keys or not hasattr(ip, "merge_size"):
        raise DeqaError(f"--max-pixels applies to processors that resize by pixel count (Qwen2-VL, "
                        f"Qwen2.5-VL); {type(ip).__name__} resizes every image to a fixed size")
    if max_pixels < 1:
        raise DeqaError(f"--max-pixels must be positive, got {max_pixels}")
    if isinstance(size, dict):
        size["longest_edge"] = int(max_pixels)
        size["shortest_edge"] = min(size["shortest_edge"], int(max_pixels))
    else:
        size.longest_edge = int(max_pixels)
        size.shortest_edge = min(size.shortest_edge, int(max_pixels))
    if hasattr(ip, "max_pixels"):
        ip.max_pixels = int(max_pixels)
