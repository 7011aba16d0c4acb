"""DaReg's inference forward compiled by OpenVINO, the CPU runtime that measured fastest here.

Why OpenVINO (issue 25, 2-core AVX2 host, the bundled DaReg on one 768² tile, fp32): PyTorch
with oneDNN and channels_last 1.86 s, ONNX Runtime 1.32 1.80-2.06 s, OpenVINO 2026.4 1.26 s with
a static input shape but 1.90 s with a dynamic one. So the graph is exported once with free
height and width, and every distinct image or tile shape is compiled on its own (0.8-1 s, or
0.3 s from OpenVINO's compiled-shape cache on disk; kept for the process).

The exported graph (``torch.onnx``, ~2 s for the bundled DaReg) is kept in the user's cache
folder (:func:`cache_folder`), named by a hash of the weights, the config and the torch version,
and read from there afterwards (0.1 s). PyTorch stays the reference, the training road and the
GPU road: the compiled forward matches it within :data:`TOLERANCE` (``tests/test_openvino_dareg.py``).
Without OpenVINO :func:`cpu_runtime` keeps PyTorch; where exporting, compiling or running fails,
the wrapper says so once and runs PyTorch from then on.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from collections import OrderedDict
from pathlib import Path

import torch
from torch import nn

from gmodiff.inputs.padding import crop, pad
from gmodiff.models.dareg import DaReg, DaRegOutput

RUNTIME_ENV = "GMODIFF_CPU_RUNTIME"
"""``torch`` keeps DaReg in PyTorch on CPU; ``openvino`` (the default where it is installed)
compiles it."""
CACHE_ENV = "GMODIFF_CACHE_DIR"
"""Folder for exported graphs (default ``$XDG_CACHE_HOME/gmodiff``, else ``~/.cache/gmodiff``)."""
TOLERANCE = 1e-3
"""Largest gain-map difference to the PyTorch forward the compiled one may have (measured:
1.6e-4 on the bundled DaReg at 768², 6e-6 in the tokens; a gain-map step of 1/255 is 3.9e-3)."""
EXPORT_VERSION = 1
"""Bumped when the exported graph changes, so older cached graphs are not read."""
MAX_GRAPHS = 8
"""Exported graphs kept in the cache folder (5 MB each for the bundled DaReg); older ones go."""
MAX_COMPILED = 4
"""Compiled shapes kept at once (a tiled run has one or two; each holds its own buffers)."""
MAX_BLOBS = 8
"""Compiled shapes kept on disk in the cache folder's ``compiled/`` (OpenVINO's own cache, about
5 MB each for the bundled DaReg); older ones go. Compiling a shape read from there takes 0.3 s
instead of 0.8-1.0 s (672×736, this host)."""


def cache_folder() -> Path:
    """Where exported graphs are kept."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "gmodiff"


def openvino_available() -> bool:
    """Whether OpenVINO and the ONNX exporter's ``onnx`` package are installed (not imported
    here: ``onnx`` alone takes 1.7 s, and is only needed where a graph is exported)."""
    from importlib.util import find_spec

    return find_spec("openvino") is not None and find_spec("onnx") is not None


class _Forward(nn.Module):
    """DaReg's inference outputs as a tuple (what an exported graph returns)."""

    def __init__(self, dareg: DaReg, with_mask: bool):
        super().__init__()
        self.dareg, self.with_mask = dareg, with_mask

    def forward(self, inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out = self.dareg(inputs, with_mask=self.with_mask)
        return (out.gain_map, out.tokens) + ((out.mask,) if self.with_mask else ())


def graph_key(dareg: DaReg, with_mask: bool) -> str:
    """A name for DaReg's exported graph: changes with any weight, the config, torch's version
    and :data:`EXPORT_VERSION`."""
    digest = hashlib.sha256()
    meta = {"config": dareg.config.to_dict(), "torch": torch.__version__, "mask": with_mask,
            "version": EXPORT_VERSION}
    digest.update(json.dumps(meta, sort_keys=True).encode())
    for name, tensor in sorted(dareg.state_dict().items()):
        digest.update(f"{name}{tuple(tensor.shape)}{tensor.dtype}".encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:24]


def _keep_newest(folder: Path, pattern: str, count: int) -> None:
    """Delete all but the ``count`` newest files matching ``pattern`` in ``folder`` (the cache
    is bounded on disk: every set of weights and every shape would add a file)."""
    def mtime(path: Path) -> float:
        try:
            return path.stat().st_mtime
        except OSError:  # deleted meanwhile by another process
            return 0.0

    for old in sorted(folder.glob(pattern), key=mtime)[:-count]:
        old.unlink(missing_ok=True)


class OpenVinoDaReg:
    """Call it like the DaReg it wraps (``(inputs, with_mask)`` → :class:`DaRegOutput`, without
    encoder features); inputs are float32 on CPU, any height and width."""

    def __init__(self, dareg: DaReg, threads: int | None = None, folder: Path | None = None):
        self.dareg = dareg.eval()
        self.config = dareg.config
        self.threads = threads or torch.get_num_threads()
        self.folder = folder or cache_folder()
        self._core = None
        self._graphs: dict[bool, object] = {}
        self._compiled: OrderedDict[tuple, object] = OrderedDict()
        self.failed: str | None = None
        """Why OpenVINO could not run (then every call runs ``dareg`` in PyTorch)."""

    def graph_path(self, with_mask: bool) -> Path:
        """Where this DaReg's exported graph is (or will be) kept."""
        return self.folder / f"dareg-{graph_key(self.dareg, with_mask)}.onnx"

    def _graph(self, with_mask: bool):
        if self._core is None:
            import openvino

            self._core = openvino.Core()
        if with_mask not in self._graphs:
            path = self.graph_path(with_mask)
            if not path.is_file():
                self._export(path, with_mask)
            self._graphs[with_mask] = self._core.read_model(str(path))
        return self._graphs[with_mask]

    def _export(self, path: Path, with_mask: bool) -> None:
        from gmodiff.io.atomic import atomic_path

        side = 2 * self.config.multiple  # any multiple: the pad inside is a no-op for those
        example = torch.rand(1, self.dareg.input_slots, self.config.in_channels, side, side)
        names = ["gain_map", "tokens"] + (["mask"] if with_mask else [])
        axes = {"inputs": {0: "batch", 3: "height", 4: "width"},
                "gain_map": {0: "batch", 2: "height", 3: "width"}, "tokens": {0: "batch", 1: "grid"}}
        if with_mask:
            axes["mask"] = {0: "batch", 2: "height", 3: "width"}
        with atomic_path(path) as tmp, warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tracer warnings about the shape checks
            torch.onnx.export(_Forward(self.dareg, with_mask).eval(), (example,), str(tmp),
                              input_names=["inputs"], output_names=names, dynamic_axes=axes,
                              opset_version=18, dynamo=False)
        _keep_newest(self.folder, "dareg-*.onnx", MAX_GRAPHS)

    def _request(self, with_mask: bool, shape: tuple[int, ...]):
        key = (with_mask, *shape)
        if key in self._compiled:
            self._compiled.move_to_end(key)
            return self._compiled[key]
        model = self._graph(with_mask).clone()
        model.reshape({"inputs": list(shape)})
        blobs = self.folder / "compiled"
        compiled = self._core.compile_model(model, "CPU", {
            "INFERENCE_NUM_THREADS": self.threads, "INFERENCE_PRECISION_HINT": "f32",
            "PERFORMANCE_HINT": "LATENCY", "CACHE_DIR": str(blobs)})
        _keep_newest(blobs, "*.blob", MAX_BLOBS)
        self._compiled[key] = compiled.create_infer_request()
        while len(self._compiled) > MAX_COMPILED:
            self._compiled.popitem(last=False)
        return self._compiled[key]

    def __call__(self, inputs: torch.Tensor, with_mask: bool = True) -> DaRegOutput:
        if self.failed is None:
            try:
                return self._run(inputs, with_mask)
            except Exception as exc:  # noqa: BLE001 — any failure keeps the reference road
                self.failed = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0][:160]}" \
                    if str(exc).strip() else type(exc).__name__
                warnings.warn(f"OpenVINO could not run DaReg ({self.failed}); running it in "
                              f"PyTorch (set {RUNTIME_ENV}=torch to skip the attempt)",
                              RuntimeWarning, stacklevel=2)
        return self.dareg(inputs, with_mask=with_mask)

    def _run(self, inputs: torch.Tensor, with_mask: bool) -> DaRegOutput:
        size = (inputs.shape[-2], inputs.shape[-1])
        padded = pad(inputs.float(), self.config).contiguous()
        request = self._request(with_mask, tuple(padded.shape))
        results = request.infer({0: padded.numpy()})
        outputs = [torch.from_numpy(results[i].copy()) for i in range(len(results))]
        mask = crop(outputs[2], size) if with_mask else None
        return DaRegOutput(gain_map=crop(outputs[0], size), mask=mask, tokens=outputs[1])


def cpu_runtime(dareg: DaReg, runtime: str | None = None) -> DaReg | OpenVinoDaReg:
    """The forward to run DaReg with on CPU: OpenVINO where ``runtime`` (default: the
    :data:`RUNTIME_ENV` variable, else ``openvino``) asks for it and it is installed, else
    ``dareg`` itself. A compiled forward that fails falls back to ``dareg`` with one warning."""
    runtime = (runtime or os.environ.get(RUNTIME_ENV, "") or "openvino").strip().lower()
    if runtime not in ("openvino", "torch"):
        from gmodiff.errors import ConfigError

        raise ConfigError(f"{RUNTIME_ENV}={runtime!r}", fix="use openvino or torch")
    if runtime == "torch" or not openvino_available():
        return dareg
    return OpenVinoDaReg(dareg)
