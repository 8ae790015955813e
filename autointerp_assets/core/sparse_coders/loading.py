"""Find, detect and load one sparse coder per requested hookpoint (never the rest of a repo).

A source is a local directory or ``hf:<repo>`` on the Hugging Face Hub. The coder of a hookpoint
lives in ``<source>/<sae.paths[hookpoint] or hookpoint>/``; its format is ``sae.format`` or, for
``auto``, told by the files present there.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Mapping, Sequence

from ..fingerprint import file_digest
from . import gemmascope_format, saelens_format, sparsify_format
from .base import CoderInfo, SparseCoder, SparseCoderError

FORMATS = {"sparsify": sparsify_format, "saelens": saelens_format, "gemmascope": gemmascope_format}
_LAYOUTS = "cfg.json + sae.safetensors (sparsify), cfg.json + sae_weights.safetensors (saelens), params.npz (gemmascope)"


def subdir(hookpoint: str, paths: Mapping[str, str] | None = None) -> str:
    return (paths or {}).get(hookpoint, hookpoint)


def resolve_source(source: str, subdirs: Sequence[str], revision: str | None = None) -> Path:
    """A local directory holding the coders; ``hf:<repo>`` downloads only the requested sub-directories."""
    if source.startswith("hf:"):
        return download(source[3:], subdirs, revision)
    root = Path(source)
    if not root.is_dir():
        raise SparseCoderError(f"sparse coder dir {root} does not exist: fix sae.source (a local dir, or "
                               f"hf:<repo> for the Hugging Face Hub)")
    return root


def download(repo: str, subdirs: Sequence[str], revision: str | None = None) -> Path:  # pragma: no cover - network
    """snapshot_download restricted to the hookpoints' sub-directories (delphi downloads every layer)."""
    from huggingface_hub import snapshot_download

    patterns = [f"{s}/*" for s in subdirs if s not in ("", ".")] or None
    try:
        return Path(snapshot_download(repo, revision=revision, allow_patterns=patterns))
    except Exception as e:
        raise SparseCoderError(f"could not fetch {repo} from the Hugging Face Hub ({type(e).__name__}: "
                               f"{str(e).splitlines()[0][:120]}): check sae.source / network / HF_HUB_OFFLINE") from None


def detect_format(d: Path) -> str:
    have = {p.name for p in d.iterdir()} if d.is_dir() else set()
    found = [name for name, mod in FORMATS.items() if set(mod.FILES) <= have]
    if len(found) == 1:
        return found[0]
    if not found:
        raise SparseCoderError(f"{d} holds no sparse coder (expected {_LAYOUTS}); found {sorted(have)[:8]}: "
                               f"fix sae.source / sae.paths")
    raise SparseCoderError(f"{d} matches several formats {found}: set sae.format")


def checkpoint_dir(root: Path, hookpoint: str, paths: Mapping[str, str] | None = None) -> Path:
    sub = subdir(hookpoint, paths)
    d = Path(root) / sub
    if not d.is_dir():
        have = sorted(p.name for p in Path(root).iterdir() if p.is_dir())
        near = difflib.get_close_matches(sub.split("/")[0], have, n=3, cutoff=0.3)
        raise SparseCoderError(f"no sparse coder for hookpoint {hookpoint!r}: {d} does not exist; nearest in "
                               f"{root}: {near or have[:5]} (fix hookpoints or sae.paths)")
    return d


def load_dir(d: Path, fmt: str = "auto", device: str = "cpu") -> SparseCoder:
    d = Path(d)
    fmt = detect_format(d) if fmt == "auto" else fmt
    mod = FORMATS.get(fmt)
    if mod is None:
        raise SparseCoderError(f"unknown sae.format {fmt!r}: use auto, {', '.join(FORMATS)}")
    lacking = [f for f in mod.FILES if not (d / f).exists()]
    if lacking:
        have = sorted(p.name for p in d.iterdir())
        raise SparseCoderError(f"sae.format is {fmt} but {d} lacks {lacking} (has {have[:8]}): "
                               f"fix sae.format (or auto) or the checkpoint layout")
    return mod.load(d, device)


def load_sparse_coder(root: str | Path, hookpoint: str, fmt: str = "auto", paths: Mapping[str, str] | None = None,
                      device: str = "cpu") -> SparseCoder:
    root = Path(root)
    if not root.is_dir():
        raise SparseCoderError(f"sparse coder dir {root} does not exist: fix sae.source")
    return load_dir(checkpoint_dir(root, hookpoint, paths), fmt, device)


def coder_info(d: Path, hookpoint: str, coder: SparseCoder) -> CoderInfo:
    files = FORMATS[coder.format].FILES
    if coder.format == "sparsify":  # weights first: keeps the fingerprints of earlier databases
        files = tuple(reversed(files))
    digest = ":".join(file_digest(Path(d) / f, limit=None) for f in files)
    return CoderInfo(hookpoint, str(d), coder.format, coder.architecture, coder.d_in, coder.num_latents,
                     coder.k, coder.hook_input, digest)
