"""Prompt encoding with Gemma-2, as the official pipelines do it (SPEC §3, REFERENCE_NOTES §3.2)."""

from __future__ import annotations

import html
import re
import urllib.parse
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

# The "complex human instruction" (CHI) the official pipelines put before every positive prompt.
COMPLEX_HUMAN_INSTRUCTION = [
    "Given a user prompt, generate an 'Enhanced prompt' that provides detailed visual descriptions suitable for video generation. Evaluate the level of detail in the user prompt:",
    "- If the prompt is simple, focus on adding specifics about colors, shapes, sizes, textures, motion, and temporal relationships to create vivid and dynamic scenes.",
    "- If the prompt is already detailed, refine and enhance the existing details slightly without overcomplicating.",
    "Here are examples of how to transform or refine prompts:",
    "- User Prompt: A cat sleeping -> Enhanced: A small, fluffy white cat slowly settling into a curled position, peacefully falling asleep on a warm sunny windowsill, with gentle sunlight filtering through surrounding pots of blooming red flowers.",
    "- User Prompt: A busy city street -> Enhanced: A bustling city street scene at dusk, featuring glowing street lamps gradually lighting up, a diverse crowd of people in colorful clothing walking past, and a double-decker bus smoothly passing by towering glass skyscrapers.",
    "Please generate only the enhanced description for the prompt below and avoid including any additional commentary or evaluations:",
    "User Prompt: ",
]

# The negative prompt the model card recommends (the pipelines' own default stays "").
RECOMMENDED_NEGATIVE_PROMPT = (
    "A chaotic sequence with misshapen, deformed limbs in heavy motion blur, sudden disappearance, jump cuts, "
    "jerky movements, rapid shot changes, frames out of sync, inconsistent character shapes, temporal artifacts, "
    "jitter, and ghosting effects, creating a disorienting visual experience."
)


def motion_prompt(prompt: str, motion_score: float | None) -> str:
    """Append the motion hint the model was trained with (" motion score: 30.")."""
    if motion_score is None:
        return prompt
    score = int(motion_score) if float(motion_score).is_integer() else motion_score
    return f"{prompt} motion score: {score}."


def clean_caption(text: str) -> str:
    """Light caption clean-up for `clean_caption=True`: URL-decode, unescape HTML, drop tags and links,
    collapse whitespace, lower-case. (Our own; the reference's IF cleaner needs bs4 and ftfy.)"""
    text = html.unescape(urllib.parse.unquote_plus(str(text)))
    text = re.sub(r"<[^>]+>", " ", text)
    text = re.sub(r"\b(?:https?://|www\.)\S+", " ", text)
    return re.sub(r"\s+", " ", text).strip().lower()


def preprocess(prompt: str, clean: bool) -> str:
    return clean_caption(prompt) if clean else prompt.lower().strip()


def encode_prompts(
    tokenizer,
    text_encoder,
    prompts: list[str],
    *,
    max_sequence_length: int,
    complex_human_instruction: list[str] | None,
    clean: bool,
    device: torch.device,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Prompts -> (embeddings [B, max_sequence_length, C] in the encoder's dtype, mask [B, max_sequence_length]).

    With a CHI, it is prepended to each (lower-cased) prompt and the text is tokenized to the CHI's length
    plus max_sequence_length − 2; then BOS and the last max_sequence_length − 1 positions are kept.
    """
    import torch  # here, so that the prompt helpers above import without torch

    texts = [preprocess(p, clean) for p in prompts]
    length = max_sequence_length
    if complex_human_instruction:
        instruction = "\n".join(complex_human_instruction)
        texts = [instruction + t for t in texts]
        length = len(tokenizer.encode(instruction)) + max_sequence_length - 2
    tokenizer.padding_side = "right"
    tokens = tokenizer(
        texts,
        padding="max_length",
        max_length=length,
        truncation=True,
        add_special_tokens=True,
        return_tensors="pt",
    )
    ids, mask = tokens.input_ids.to(device), tokens.attention_mask.to(device)
    with torch.no_grad():
        embeds = text_encoder(ids, attention_mask=mask)[0].to(text_encoder.dtype)
    keep = [0, *range(-max_sequence_length + 1, 0)]  # BOS + the last max_sequence_length − 1 positions
    return embeds[:, keep], mask[:, keep]
