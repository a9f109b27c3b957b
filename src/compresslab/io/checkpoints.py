"""Checkpoint files: atomic writes, safe loads, and building a model back from a checkpoint.

Every load goes through ``torch.load(weights_only=True)``: a checkpoint is data, never code.
"""

from __future__ import annotations

import hashlib
import io
import os
import warnings
from pathlib import Path
from typing import Any, Mapping

import torch
from compressai.models import CompressionModel

from compresslab.io.atomic import atomic_write_bytes


class CheckpointError(ValueError):
    pass


def _atomic_checkpoint_io() -> type:
    from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO

    class AtomicCheckpointIO(TorchCheckpointIO):
        """Write to a temporary file in the same folder, fsync, then ``os.replace``.

        A kill during a save leaves the previous checkpoint intact (Lightning's default writes in place).
        """

        def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options=None) -> None:
            atomic_torch_save(checkpoint, path)

        def load_checkpoint(self, path, map_location=None, weights_only=None) -> dict[str, Any]:
            # Always weights_only: a resumed file never runs code, whatever Lightning's default (Lightning < 2.6 and
            # torch < 2.6 would unpickle anything). Our checkpoints hold tensors and plain values only.
            return torch.load(path, map_location=map_location or "cpu", weights_only=True)

    AtomicCheckpointIO.__module__, AtomicCheckpointIO.__qualname__ = __name__, "AtomicCheckpointIO"
    return AtomicCheckpointIO


def __getattr__(name: str) -> Any:
    # AtomicCheckpointIO is a Lightning plugin: defined on first use, so that evaluate, export, compress and
    # decompress (which read checkpoints through this module) do not import Lightning at start-up
    if name == "AtomicCheckpointIO":
        globals()[name] = cls = _atomic_checkpoint_io()
        return cls
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class CheckpointWriteError(CheckpointError):
    """A checkpoint could not be written (full disk, unwritable folder); the previous one is intact."""


TMP_GLOB = ".*.ckpt.*.tmp"  # what atomic_torch_save's mkstemp names look like, for remove_stale_temporaries


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> None:
    path = Path(path)
    # Serialised in memory first: a write error is then a plain OSError from our own write (torch's zip writer
    # reports a full disk as a RuntimeError, and again while closing: two tracebacks, issue 31).
    buf = io.BytesIO()
    torch.save(obj, buf)
    try:
        atomic_write_bytes(path, buf.getbuffer())
    except OSError as e:
        kept = f"the previous {path.name} is kept intact" if path.exists() else f"no {path.name} was written"
        others = sorted(p.name for p in path.parent.glob("*.ckpt") if p != path)
        kept += f"; {', '.join(others)} untouched" if others else ""
        raise CheckpointWriteError(f"cannot write checkpoint {path}: {e.strerror or e}; {kept}") from None


def check_export_target(src: str | os.PathLike, out: str | os.PathLike, force: bool = False) -> None:
    """Refuse, in one line, an output that would destroy something: the input itself (same path, a hard link or a
    symlink to it: it is the run's checkpoint), any existing file unless ``force``, a folder; and an output whose
    folder cannot exist (a parent path that is a regular file)."""
    out = Path(out)
    if out.is_dir():
        raise CheckpointError(f"output {out} is a folder; name the file to write, e.g. {out / 'model.pth.tar'}")
    if out.exists():
        if not str(src).startswith("zoo:") and Path(src).exists() and os.path.samefile(src, out):
            raise CheckpointError(f"refusing to write over the input: output {out} is the same file as {src}; "
                                  f"name a new file for the export")
        if not force:
            raise CheckpointError(f"output {out} exists; pass --force to replace it, or name a new file")
    for parent in out.absolute().parents:
        if parent.exists():
            if not parent.is_dir():
                raise CheckpointError(f"cannot write {out}: {parent} is a file, not a folder; name an output in a "
                                      f"folder")
            break


def remove_stale_temporaries(folder: str | os.PathLike) -> list[Path]:
    """Remove the temporary files of checkpoint writes that were killed (a SIGKILL runs no cleanup): called when a
    run starts, before anything writes into ``folder``. Returns what was removed."""
    removed = []
    for p in Path(folder).glob(TMP_GLOB) if Path(folder).is_dir() else ():
        p.unlink(missing_ok=True)
        removed.append(p)
    return removed


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Load a Lightning checkpoint, a plain state dict or a CompressAI zoo model (``zoo:<arch>/<metric>/<quality>``),
    safely; clear errors for missing/corrupt files."""
    from compresslab.io.zoo import ZooError, is_zoo, load_zoo_checkpoint

    if is_zoo(path):
        try:
            return load_zoo_checkpoint(str(path))
        except ZooError as e:
            raise CheckpointError(str(e)) from None
        except Exception as e:  # noqa: BLE001 - a corrupt cached file
            raise CheckpointError(f"cannot read the zoo weights for {path}: {type(e).__name__}: "
                                  f"{str(e).splitlines()[0][:300]}") from e
    from compresslab.io.inputs import InputFileError, check_regular_file

    path = Path(path)
    try:  # a directory, FIFO or device (or a link to one) is refused before torch opens it (a FIFO would block)
        st = check_regular_file(path, "checkpoint")
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint {path} does not exist") from None
    except InputFileError as e:
        raise CheckpointError(str(e)) from None
    if st.st_size == 0:
        raise CheckpointError(f"checkpoint {path} is empty (0 bytes): an interrupted copy or save; use another one")
    try:
        with warnings.catch_warnings():  # torch warns of a plain pickle's protocol before failing: one line, not two
            warnings.filterwarnings("ignore", message="Detected pickle protocol", category=UserWarning)
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - torch raises many types for bad files (a text file: KeyError, IndexError)
        from compresslab.io.file_kinds import unreadable_message

        with open(path, "rb") as f:
            head = f.read(512)
        # torch's own text advises weights_only=False (running the file's code): never passed on
        raise CheckpointError(unreadable_message(path, head, e)) from None
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"checkpoint {path} holds a {type(obj).__name__}, not a state dict")
    return dict(obj)


def state_dict_of(ckpt: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """Model weights from a Lightning checkpoint (``model.`` prefix removed) or a plain/CompressAI state dict."""
    sd = ckpt.get("state_dict", ckpt)
    if not isinstance(sd, Mapping) or not sd:
        raise CheckpointError("checkpoint has no weights (no 'state_dict' and no tensors)")
    if any(k.startswith("model.") for k in sd):
        sd = {k[len("model."):]: v for k, v in sd.items() if k.startswith("model.")}
    return {k: v for k, v in sd.items() if isinstance(v, torch.Tensor)}


def model_config_of(ckpt: Mapping[str, Any]) -> dict[str, Any] | None:
    meta = ckpt.get("compresslab") or {}
    return dict(meta["model"]) if "model" in meta else None


def load_weights(model: CompressionModel, ckpt: Mapping[str, Any], source: str = "checkpoint") -> None:
    """Load weights with a readable error when the architecture does not match."""
    sd = state_dict_of(ckpt)
    try:
        # CompressionModel.load_state_dict resizes the CDF buffers of entropy models to the saved ones.
        model.load_state_dict(sd, strict=True)
    except RuntimeError as e:
        own = set(model.state_dict())
        missing, unexpected = sorted(own - set(sd)), sorted(set(sd) - own)
        detail = str(e).splitlines()
        hint = "; ".join(f"{what} {key_groups(keys)}" for what, keys in (("missing", missing), ("unexpected", unexpected))
                         if keys) if (missing or unexpected) else detail[1].strip() if len(detail) > 1 else detail[0]
        saved = model_config_of(ckpt)
        raise CheckpointError(
            f"{source} does not fit model {getattr(model, 'registry_name', type(model).__name__)} "
            f"({getattr(model, 'hparams_dict', {})}): {hint}"
            + (f". The checkpoint was trained as {saved}" if saved else "")
        ) from e


def key_groups(keys: list[str]) -> str:
    """'12 keys under h_a.* (6), h_s.* (6)': how many state-dict keys, grouped by their top-level module, so a
    wrong architecture shows which whole parts are absent (a list of the first few keys hid h_a/h_s)."""
    groups: dict[str, int] = {}
    for k in keys:
        top = k.split(".")[0] + (".*" if "." in k else "")
        groups[top] = groups.get(top, 0) + 1
    parts = [f"{g} ({n})" for g, n in sorted(groups.items(), key=lambda gn: (-gn[1], gn[0]))]
    return f"{len(keys)} key{'s' * (len(keys) != 1)} under {', '.join(parts[:8])}" + \
        (f" and {len(parts) - 8} more groups" if len(parts) > 8 else "")


def size_from_weights(state_dict: Mapping[str, Any]) -> dict[str, int]:
    """N and M of a plain state dict from its analysis transform g_a: N = the output channels of the conv that reads
    the RGB image, M = those of g_a's last layer (every registered model's g_a ends in the latent's conv). Empty
    when the weights have no such g_a."""
    convs = [(int(k.split(".")[1]), k, v) for k, v in state_dict.items()
             if k.startswith("g_a.") and k.split(".")[1].isdigit() and k.endswith("weight")
             and getattr(v, "dim", lambda: 0)() == 4]
    rgb = [v for _, _, v in sorted(convs, key=lambda c: (c[0], c[1])) if v.shape[1] == 3]
    if not convs or not rgb:
        return {}
    last = max(convs, key=lambda c: (c[0], c[1] == f"g_a.{c[0]}.weight"))
    return {"N": int(rgb[0].shape[0]), "M": int(last[2].shape[0])}


def weights_hash(model: torch.nn.Module) -> str:
    """A digest of the weights (and CDF tables) a decoder needs: any change in them changes the hash."""
    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()
