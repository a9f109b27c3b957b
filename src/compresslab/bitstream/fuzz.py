"""Fuzzing the decoder: mutate real .clab files and decode each in a forked child, so that a crash, a hang or an
uncaught exception is counted instead of ending the campaign (issues 15/19).

Each case starts from a file a model really wrote, applies one mutation, recomputes the CRC-32 and (except in the
``digest_kept`` class) the payload digest so that the damage reaches the decoder itself, and decodes it with the
in-process decoder (``codec.decode_bytes``) in a child forked from a parent that already holds the model: a case
costs a fork, not a Python start-up. Outcomes: ``decoded`` (any image), ``refused`` (ContainerError or
CheckpointError, the clean path), ``uncaught`` (any other exception), ``signal`` (the child was killed, e.g.
SIGSEGV), ``hang`` (no answer within the time limit). ``digest_kept`` cases edit the payload but keep the old digest:
a decode there is a silent decode of an edited payload; so is any decode in the other MUST_REFUSE classes (issue 31:
groups copied or dropped, a key given twice, header lies the strings cannot hold). ``special_files`` covers the
path entry point: directories, FIFOs, devices and links to them, decoded through the same forked children.
"""

from __future__ import annotations

import json
import os
import random
import resource
import select
import signal
import struct
import time
import zlib
from collections import Counter, defaultdict
from dataclasses import dataclass
from typing import Callable

from compresslab.bitstream.container import MAGIC, Container

MUTATIONS = ("bitflip", "byte_edit", "truncate_string", "extend_string", "insert", "delete", "random_payload",
             "empty_string", "swap_strings", "header_shape", "header_size", "header_model", "header_hash",
             "header_lengths", "file_truncate", "file_bitflip", "digest_kept",
             # issue 31: header-only lies whose size and latent shape agree (payload and digest untouched), at
             # several scales of the coded image; groups copied, dropped or split; a key given twice
             "header_lie_x2", "header_lie_x8", "header_lie_x64", "header_lie_x128", "header_lie_wide",
             "extra_group_copy", "missing_group", "extra_string", "duplicate_key")
# Scale of each header lie (rows, columns): x128 is 16384^2 from our 128^2 input, wide 32768x8192 (issue 31's cases)
HEADER_LIES = {"header_lie_x2": (2, 2), "header_lie_x8": (8, 8), "header_lie_x64": (64, 64),
               "header_lie_x128": (128, 128), "header_lie_wide": (256, 64)}
# Files that must be refused in the decoder's callers in every case (outcome "decoded" is a finding there)
MUST_REFUSE = ("digest_kept", "extra_group_copy", "missing_group", "extra_string", "duplicate_key",
               "header_lie_x64", "header_lie_x128", "header_lie_wide")


@dataclass
class Case:
    mutation: str
    data: bytes


def _repack(c: Container, strings: list[list[bytes]] | None = None, **fields) -> bytes:
    d = dict(model=c.model, weights_hash=c.weights_hash, height=c.height, width=c.width, shape=c.shape,
             strings=c.strings if strings is None else strings)
    d.update(fields)
    return Container(**d).to_bytes()


def _with_crc(body: bytes) -> bytes:
    return body + struct.pack(">I", zlib.crc32(body))


def _edit_header(data: bytes, edit: Callable[[dict], None]) -> bytes:
    """Rewrite the JSON header (lengths and digest untouched unless ``edit`` changes them) with a fresh CRC."""
    hlen = struct.unpack(">I", data[5:9])[0]
    header = json.loads(data[9: 9 + hlen])
    edit(header)
    raw = json.dumps(header, sort_keys=True).encode()
    return _with_crc(data[:4] + data[4:5] + struct.pack(">I", len(raw)) + raw + data[9 + hlen: -4])


def mutate(good: bytes, rng: random.Random, mutation: str | None = None) -> Case:
    c = Container.from_bytes(good)
    m = mutation or rng.choice(MUTATIONS)
    flat = [(gi, si) for gi, g in enumerate(c.strings) for si in range(len(g))]
    gi, si = rng.choice(flat)
    strings = [list(g) for g in c.strings]
    s = bytearray(strings[gi][si])

    def put(new: bytes) -> bytes:
        strings[gi][si] = bytes(new)
        return _repack(c, strings)

    if m in ("bitflip", "digest_kept"):
        if not s:
            s = bytearray(b"\0")
        # distinct positions: flipping one bit twice would leave the payload unchanged (a no-op "edit")
        for i in rng.sample(range(len(s) * 8), min(rng.randint(1, 8), len(s) * 8)):
            s[i // 8] ^= 1 << (i % 8)
        data = put(s)
        if m == "digest_kept":  # the payload changed, the header still carries the digest of the original
            orig = json.loads(good[9: 9 + struct.unpack(">I", good[5:9])[0]])["payload_sha256"]
            data = _edit_header(data, lambda h: h.__setitem__("payload_sha256", orig))
    elif m == "byte_edit":
        s = s or bytearray(b"\0")
        for _ in range(rng.randint(1, 16)):
            s[rng.randrange(len(s))] = rng.randrange(256)
        data = put(s)
    elif m == "truncate_string":
        data = put(s[: rng.randrange(len(s) + 1)])
    elif m == "extend_string":
        data = put(s + bytes(rng.randrange(256) for _ in range(rng.randint(1, 64))))
    elif m == "insert":
        i = rng.randrange(len(s) + 1)
        data = put(s[:i] + bytes(rng.randrange(256) for _ in range(rng.randint(1, 32))) + s[i:])
    elif m == "delete":
        i = rng.randrange(len(s) + 1)
        data = put(s[:i] + s[i + rng.randint(1, 32):])
    elif m == "random_payload":
        fill = rng.choice(["random", "ff", "00"])
        strings = [[bytes(rng.randrange(256) if fill == "random" else int(fill, 16) for _ in st) for st in g]
                   for g in c.strings]
        data = _repack(c, strings)
    elif m == "empty_string":
        data = put(b"")
    elif m == "swap_strings":
        groups = [list(g) for g in c.strings]  # one group (factorized): a second one the model never wrote
        data = _repack(c, groups[::-1] if len(groups) > 1 else groups + groups)
    elif m == "header_shape":
        k = rng.choice([(1, 0), (0, 1), (-1, 0), (2, 2), (100, 100)])
        data = _repack(c, shape=[max(1, c.shape[0] + k[0]), max(1, c.shape[1] + k[1])])
    elif m == "header_size":
        data = _repack(c, height=max(1, c.height + rng.choice([-64, -1, 1, 64, 4096])),
                       width=max(1, c.width + rng.choice([-64, -1, 0, 1, 64])))
    elif m == "header_model":
        key = rng.choice(sorted(k for k in c.model if k != "name") or ["N"])
        data = _repack(c, model={**c.model, key: rng.choice([0, -1, 1 << 20, "x", None, [1]])})
    elif m == "header_hash":
        data = _repack(c, weights_hash="0" * len(c.weights_hash))
    elif m == "header_lengths":
        def edit(h):
            g = rng.randrange(len(h["lengths"]))
            h["lengths"][g][0] = rng.choice([0, h["lengths"][g][0] + 1, -1, 1 << 40, 1.5, "7"])
        data = _edit_header(good, edit)
    elif m in HEADER_LIES:
        # Both sides scaled: the input is a multiple of every model's padding, so the coded shape scales exactly
        # and the file passes every header check that compares the size with the shape (clamped to MAX_SIDE).
        from compresslab.bitstream.container import MAX_SIDE

        kh, kw = HEADER_LIES[m]
        kh, kw = min(kh, MAX_SIDE // c.height), min(kw, MAX_SIDE // c.width)
        data = _repack(c, height=c.height * kh, width=c.width * kw, shape=[c.shape[0] * kh, c.shape[1] * kw])
    elif m == "extra_group_copy":
        data = _repack(c, [list(g) for g in c.strings] + [list(c.strings[gi])])
    elif m == "missing_group":
        data = _repack(c, [list(g) for k, g in enumerate(c.strings) if k != gi] or [[]])
    elif m == "extra_string":
        strings[gi] = strings[gi] + [bytes(strings[gi][si])]
        data = _repack(c, strings)
    elif m == "duplicate_key":  # the same key twice: json.loads keeps the last one silently
        key = rng.choice(["height", "width", "shape", "lengths"])
        hlen = struct.unpack(">I", good[5:9])[0]
        header = json.loads(good[9: 9 + hlen])
        raw = json.dumps(header, sort_keys=True)[:-1] + f', "{key}": {json.dumps(header[key])}}}'
        raw = raw.encode()
        data = _with_crc(good[:5] + struct.pack(">I", len(raw)) + raw + good[9 + hlen: -4])
    elif m == "file_truncate":
        data = good[: rng.randrange(len(good))]
    elif m == "file_bitflip":
        b = bytearray(good[:-4])
        i = rng.randrange(len(MAGIC) * 8, len(b) * 8)
        b[i // 8] ^= 1 << (i % 8)
        data = _with_crc(bytes(b))
    else:
        raise ValueError(f"unknown mutation {m!r}; one of {MUTATIONS}")
    return Case(m, data)


def _child(decode: Callable[[bytes], object], datas: list[bytes], wfd: int, memory_bytes: int) -> None:
    """Runs in the forked child: decode each case in turn, one JSON line per case written before the next starts
    (so the parent knows which case a crash or hang belongs to), then exit without cleanup (os._exit)."""
    from compresslab.io.checkpoints import CheckpointError
    from compresslab.bitstream.container import ContainerError

    import torch

    torch.set_num_threads(1)  # a thread pool started by the parent does not survive fork
    resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
    for data in datas:
        try:
            decode(data)
            msg = {"outcome": "decoded"}
        except (ContainerError, CheckpointError) as e:
            msg = {"outcome": "refused", "detail": str(e)[:200]}
        except BaseException as e:  # noqa: BLE001 - counting exactly these is the point
            msg = {"outcome": "uncaught", "detail": f"{type(e).__name__}: {str(e)[:200]}"}
        os.write(wfd, json.dumps(msg).encode() + b"\n")
    os._exit(0)


def _vm_bytes() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    return 0


def run_cases(decode: Callable[[bytes], object], datas: list[bytes], timeout: float = 10.0,
              memory_mb: int = 2048) -> list[dict]:
    """Decode each of ``datas`` in forked children with a per-case time limit and an address-space limit (the
    parent's + memory_mb). One child takes cases until one kills it (signal) or hangs; the next child goes on from
    the following case, so a crash costs one fork, and a clean case costs no fork at all."""
    results: list[dict] = []
    limit = _vm_bytes() + (memory_mb << 20)
    while len(results) < len(datas):
        todo = datas[len(results):]
        rfd, wfd = os.pipe()
        pid = os.fork()
        if pid == 0:  # child
            os.close(rfd)
            _child(decode, todo, wfd, limit)
        os.close(wfd)
        buf, got, last, hung = b"", 0, time.monotonic(), False
        while got < len(todo):
            left = last + timeout - time.monotonic()
            if left <= 0:
                os.kill(pid, signal.SIGKILL)
                results.append({"outcome": "hang", "seconds": timeout})
                hung = True
                break
            ready, _, _ = select.select([rfd], [], [], min(left, 0.5))
            if not ready:
                continue
            chunk = os.read(rfd, 65536)
            if not chunk:  # the child is gone before reporting the current case
                break
            buf += chunk
            *lines, buf = buf.split(b"\n")
            for line in lines:
                now = time.monotonic()
                results.append({**json.loads(line), "seconds": round(now - last, 4)})
                got, last = got + 1, now
        os.close(rfd)
        _, status = os.waitpid(pid, 0)
        if got < len(todo) and not hung:  # the child died on case number `got` of this batch
            if os.WIFSIGNALED(status):
                results.append({"outcome": "signal", "detail": signal.Signals(os.WTERMSIG(status)).name})
            else:
                results.append({"outcome": "uncaught", "detail": f"child exited {os.WEXITSTATUS(status)} "
                                                                 f"without a report"})
    return results


def campaign(decode: Callable[[bytes], object], good: bytes, cases: int, seed: int = 0, timeout: float = 10.0,
             memory_mb: int = 2048) -> dict:
    """``cases`` mutations of ``good`` (mutation classes in turn, parameters from ``seed``); counts per outcome and
    per class, and examples of every non-clean outcome."""
    rng = random.Random(seed)
    by_outcome: Counter = Counter()
    by_class: dict[str, Counter] = defaultdict(Counter)
    examples: dict[str, list] = defaultdict(list)
    t0 = time.monotonic()
    batch = [mutate(good, rng, MUTATIONS[i % len(MUTATIONS)]) for i in range(cases)]
    for i, (case, r) in enumerate(zip(batch, run_cases(decode, [c.data for c in batch], timeout, memory_mb))):
        by_outcome[r["outcome"]] += 1
        by_class[case.mutation][r["outcome"]] += 1
        bad = r["outcome"] in ("uncaught", "signal", "hang") or (case.mutation in MUST_REFUSE
                                                                 and r["outcome"] == "decoded")
        if bad and len(examples[case.mutation]) < 3:
            examples[case.mutation].append({"case": i, **{k: v for k, v in r.items() if k != "seconds"}})
    silent = sum(by_class[m]["decoded"] for m in MUST_REFUSE)
    return {"cases": cases, "seed": seed, "seconds": round(time.monotonic() - t0, 1),
            "outcomes": dict(by_outcome), "silent_decodes_of_edited_payloads": silent,
            "by_mutation": {k: dict(v) for k, v in sorted(by_class.items())}, "examples": dict(examples)}


def special_files(folder) -> dict[str, str]:
    """Paths that are not regular files, made under ``folder`` (a FIFO, links to /dev/zero and to a directory, a
    directory, /dev/null itself): every entry point that takes a .clab path must refuse them unread, in one line."""
    from pathlib import Path

    folder = Path(folder)
    made = {"directory": folder / "a_dir.clab", "fifo": folder / "fifo.clab", "link_dev_zero": folder / "zero.clab",
            "link_directory": folder / "dir_link.clab", "char_device": Path("/dev/null")}
    made["directory"].mkdir(exist_ok=True)
    if not made["fifo"].exists():
        os.mkfifo(made["fifo"])
    for name, target in (("link_dev_zero", "/dev/zero"), ("link_directory", made["directory"])):
        if not made[name].is_symlink():
            made[name].symlink_to(target)
    return {k: str(v) for k, v in made.items()}
