"""How short a valid rANS string can be: a header that asks for more symbols than its strings can hold is refused
before the entropy decoder reads a byte of them (issue 31: a 2 KB file declaring a 4096x4096 image decoded for
14 s into garbage). Rigorous lower bounds from CompressAI's coder and the model's own CDF tables; and the other side, how far past its
string the decoder can read (rans_slack)."""

from __future__ import annotations

import torch


def _bits_per_row(entropy_model) -> torch.Tensor | None:
    """Per CDF table (row), the fewest bits any of its symbols costs at 16-bit precision: log2(2^16 / its largest
    frequency). None when the tables are not built."""
    cdf = getattr(entropy_model, "_quantized_cdf", None)
    if cdf is None or cdf.numel() == 0:
        return None
    lengths = entropy_model._cdf_length.reshape(-1).long()
    freq = (cdf[:, 1:] - cdf[:, :-1]).long()
    valid = torch.arange(freq.shape[1], device=cdf.device)[None, :] < (lengths[:, None] - 1)
    top = torch.where(valid, freq, torch.zeros((), dtype=torch.long)).amax(1).clamp_min(1)
    return torch.log2((1 << 16) / top.double())


def min_string_bytes(n_symbols: int, entropy_model) -> int:
    """The shortest rANS string that can code ``n_symbols`` symbols with ``entropy_model``'s tables. The coder's
    state grows by log2(2^16 / freq) per symbol, less at most 2^-14 bit of rounding (CompressAI's Rans64EncPut
    keeps the state above 2^31 and frequencies are below 2^16), and all but its last 64 bits are written out. An
    EntropyBottleneck codes every channel (one table each) the same number of times; other models pick a table
    per symbol, so the cheapest one bounds them."""
    bits = _bits_per_row(entropy_model)
    if bits is None:
        return 0
    per = (bits - 2.0 ** -14).clamp_min(0)
    rows = per.numel()
    if getattr(entropy_model, "channels", None) == rows and n_symbols % rows == 0:
        total = float(per.sum()) * (n_symbols // rows)
    else:
        total = float(per.min()) * n_symbols
    return max(0, int((total - 64) // 8))


def rans_slack(n_bytes: int, n_symbols: int = 0) -> int:
    """Zero bytes appended to an entropy-coded string before decoding, sized by what the decoder can read for the
    ``n_symbols`` the header asks for. CompressAI's rANS decoder (cpp_exts/rans/rans_interface.cpp,
    decode_with_indexes / decode_stream) never checks the end of its string: Rans64DecInit reads 2 32-bit words,
    Rans64DecAdvance at most one word per symbol, and an escape (the symbol at max_value) reads its length nibbles
    and raw nibbles through Rans64DecGetBits, at most one word per call, with the length chained by the stream's
    own bits. Hence: 8 bytes, plus 2 words per symbol (the advance, and one escape read: in our zeros a read makes
    the next nibbles 0, which ends a length chain), plus 64 KiB + 16x the string for escape lengths coded in the
    string's own bits (issue 19's measurement). Before issue 31 the slack followed the string only, and a header
    asking for 100x more symbols than were coded read past it (SIGSEGV in-process). A valid string never reads the
    slack, so decoding is unchanged; its memory is part of the estimate that decode_bytes checks first."""
    return 8 + 8 * n_symbols + (1 << 16) + 16 * n_bytes
