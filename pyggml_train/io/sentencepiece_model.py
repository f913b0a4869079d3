"""A SentencePiece model (the bytes of a ``tokenizer.model``) rebuilt from a vocabulary: what
a GGUF with ``tokenizer.ggml.model`` = ``llama`` keeps of one (pieces, scores, piece types).

The ``sentencepiece`` package reads a serialized ``ModelProto``; building one needs only a
few protobuf fields, written here by hand (field numbers from sentencepiece_model.proto;
tests/io/test_gguf_sentencepiece.py: the rebuilt model tokenizes as the one the trainer
wrote), so no protobuf dependency.
The model is a BPE over the scores with identity normalization: what llama.cpp's SPM
tokenizer does with the same GGUF (it neither normalizes nor removes spaces).
"""

from __future__ import annotations

import struct

# sentencepiece_model.proto: ModelProto, its SentencePiece, TrainerSpec, NormalizerSpec
MODEL_PIECES, MODEL_TRAINER_SPEC, MODEL_NORMALIZER_SPEC = 1, 2, 3
PIECE_PIECE, PIECE_SCORE, PIECE_TYPE = 1, 2, 3
TRAINER_MODEL_TYPE, TRAINER_VOCAB_SIZE, TRAINER_BYTE_FALLBACK = 3, 4, 35
TRAINER_UNK_ID, TRAINER_BOS_ID, TRAINER_EOS_ID, TRAINER_PAD_ID = 40, 41, 42, 43
NORM_NAME, NORM_ADD_DUMMY_PREFIX = 1, 3
NORM_REMOVE_EXTRA_WHITESPACES, NORM_ESCAPE_WHITESPACES = 4, 5
MODEL_TYPE_BPE = 2
PIECE_TYPE_BYTE = 6  # piece types number as GGUF's token types: 1 normal .. 6 byte
_VARINT, _LEN, _FIXED32 = 0, 2, 5  # protobuf wire types


def _varint(value: int) -> bytes:
    value &= (1 << 64) - 1  # a negative int32 is its 64-bit two's complement
    out = bytearray()
    while True:
        low, value = value & 0x7F, value >> 7
        out.append(low | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _key(field: int, wire: int) -> bytes:
    return _varint(field << 3 | wire)


def _int(field: int, value: int) -> bytes:
    return _key(field, _VARINT) + _varint(value)


def _bytes(field: int, value: bytes) -> bytes:
    return _key(field, _LEN) + _varint(len(value)) + value


def _float(field: int, value: float) -> bytes:
    return _key(field, _FIXED32) + struct.pack("<f", value)


def sentencepiece_model(
    pieces: list[str],
    scores: list[float],
    types: list[int],
    unk_id: int,
    bos_id: int = -1,
    eos_id: int = -1,
    add_dummy_prefix: bool = True,
) -> bytes:
    """A serialized SentencePiece BPE model of these pieces (ids in list order), with byte
    fallback when any piece is a byte piece (``<0x41>``)."""
    if not len(pieces) == len(scores) == len(types):
        raise ValueError(
            f"{len(pieces)} pieces, {len(scores)} scores and {len(types)} types: one each"
        )
    body = bytearray()
    for piece, score, kind in zip(pieces, scores, types, strict=True):
        entry = _bytes(PIECE_PIECE, piece.encode("utf-8"))
        entry += _float(PIECE_SCORE, score) + _int(PIECE_TYPE, int(kind))
        body += _bytes(MODEL_PIECES, entry)
    trainer = (
        _int(TRAINER_MODEL_TYPE, MODEL_TYPE_BPE)
        + _int(TRAINER_VOCAB_SIZE, len(pieces))
        + _int(TRAINER_BYTE_FALLBACK, int(PIECE_TYPE_BYTE in types))
        + _int(TRAINER_UNK_ID, unk_id)
        + _int(TRAINER_BOS_ID, bos_id)
        + _int(TRAINER_EOS_ID, eos_id)
        + _int(TRAINER_PAD_ID, -1)
    )
    normalizer = (
        _bytes(NORM_NAME, b"identity")
        + _int(NORM_ADD_DUMMY_PREFIX, int(add_dummy_prefix))
        + _int(NORM_REMOVE_EXTRA_WHITESPACES, 0)
        + _int(NORM_ESCAPE_WHITESPACES, 1)
    )
    body += _bytes(MODEL_TRAINER_SPEC, trainer) + _bytes(MODEL_NORMALIZER_SPEC, normalizer)
    return bytes(body)
