"""The artifact store: one directory tree shared by the API and the workers (a volume in compose).

    {root}/{tenant}/teachers/{teacher id}/weights.{safetensors|pt}
    {root}/{tenant}/datasets/{dataset id}/data.npz | upload.zip + folder/
    {root}/{tenant}/jobs/{job id}/out/{student.safetensors, student.onnx, report.json, report.html, train.log}
    {root}/{tenant}/jobs/{job id}/checkpoints/checkpoint.pt

The file names are :mod:`gacd_core.artifacts`'s (``JOB_OUTPUTS``, ``TEACHER_FILES``, ``CHECKPOINT``).
Tenants and ids are validated before they become path parts, and :meth:`ArtifactStore.child` refuses
any name that would leave its directory, so no request can reach a path outside the store.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

ARTIFACT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_PART = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


class ArtifactStore:
    def __init__(self, root: Path) -> None:
        self.root = Path(root).resolve()

    def _dir(self, tenant: str, kind: str, rid: str) -> Path:
        if not _PART.match(tenant) or not _PART.match(rid):
            raise ValueError("invalid tenant or id")
        return self.root / tenant / kind / rid

    def teacher_dir(self, tenant: str, rid: str) -> Path:
        return self._dir(tenant, "teachers", rid)

    def dataset_dir(self, tenant: str, rid: str) -> Path:
        return self._dir(tenant, "datasets", rid)

    def job_dir(self, tenant: str, rid: str) -> Path:
        return self._dir(tenant, "jobs", rid)

    def job_out(self, tenant: str, rid: str) -> Path:
        return self.job_dir(tenant, rid) / "out"

    def job_checkpoints(self, tenant: str, rid: str) -> Path:
        return self.job_dir(tenant, rid) / "checkpoints"

    def relative(self, path: Path) -> str:
        return str(Path(path).resolve().relative_to(self.root))

    def absolute(self, relative: str) -> Path:
        p = (self.root / relative).resolve()
        if not p.is_relative_to(self.root):
            raise ValueError("path leaves the artifact store")
        return p

    @staticmethod
    def child(base: Path, name: str) -> Path:
        """``base / name`` for a plain file name (no separators, no leading dot), else ValueError."""
        if not ARTIFACT_NAME.match(name) or name in (".", ".."):
            raise ValueError(f"invalid name {name!r}")
        p = (base / name).resolve()
        if p.parent != base.resolve():
            raise ValueError(f"invalid name {name!r}")
        return p

    @staticmethod
    def remove_tree(path: Path) -> None:
        shutil.rmtree(path, ignore_errors=True)


def safetensors_metadata(path: Path, max_header: int = 16 << 20) -> dict[str, str]:
    """The ``__metadata__`` of a .safetensors file, read from its JSON header without torch."""
    import json
    import struct

    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) != 8:
            raise ValueError("not a safetensors file (too short)")
        (n,) = struct.unpack("<Q", head)
        if n > max_header:
            raise ValueError("safetensors header too large")
        header = json.loads(f.read(n))
    meta = header.get("__metadata__") or {}
    if not isinstance(meta, dict):
        raise ValueError("safetensors metadata is not a mapping")
    return {str(k): str(v) for k, v in meta.items()}
