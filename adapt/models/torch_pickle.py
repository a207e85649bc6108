"""Read a PyTorch state dict into NumPy without importing torch, refusing anything but tensors.

`torch.save` files are pickles; unpickling an untrusted pickle can run any code. This reader accepts
only the globals a plain state dict needs (an `OrderedDict`, the tensor rebuild functions and the
typed storage classes) and raises `pickle.UnpicklingError` on any other global. No torch class is
ever constructed: storages become NumPy buffers and tensors become strided NumPy views, copied.

Both on-disk layouts are supported:
  legacy (torch < 1.6): five concatenated pickles (magic number, protocol version, system info,
    the object, the list of storage keys) followed by each storage as int64 count + raw bytes;
  zip (torch >= 1.6): `<archive>/data.pkl` plus one raw file per storage, `<archive>/data/<key>`.
"""
from __future__ import annotations

import collections
import io
import math
import pickle
import zipfile
from pathlib import Path

import numpy as np

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_STORAGE_DTYPES = {
    "FloatStorage": np.float32, "DoubleStorage": np.float64, "HalfStorage": np.float16,
    "LongStorage": np.int64, "IntStorage": np.int32, "ShortStorage": np.int16,
    "CharStorage": np.int8, "ByteStorage": np.uint8, "BoolStorage": np.bool_,
}


class _StorageType:
    """Stand-in for a `torch.<X>Storage` class: only its name (hence element dtype) matters."""

    def __init__(self, name: str):
        self.name = name


class _Storage:
    """One storage: filled from the file after the object pickle is read (legacy) or at once (zip)."""

    def __init__(self, dtype: np.dtype, numel: int):
        self.dtype, self.numel, self.data = dtype, numel, None


class _TensorRef:
    """What `_rebuild_tensor_v2` returns here; turned into an ndarray once storages are filled."""

    def __init__(self, storage, offset, size, stride):
        if not isinstance(storage, _Storage):
            raise pickle.UnpicklingError("tensor rebuild without a storage")
        ints = (offset, *size, *stride)
        if not all(isinstance(v, int) and v >= 0 for v in ints) or len(size) != len(stride):
            raise pickle.UnpicklingError("tensor rebuild with malformed size/stride")
        numel = math.prod(size)
        if numel > max(storage.numel - offset, 0):  # stride 0 or overlapping: refuse before allocating
            raise pickle.UnpicklingError(
                f"tensor of shape {tuple(size)} declares {numel} elements but its storage holds "
                f"{storage.numel} (stride-0 or overlapping tensor): refused, save it with .contiguous()")
        self.storage, self.offset, self.size, self.stride = storage, offset, tuple(size), tuple(stride)

    def materialise(self) -> np.ndarray:
        buf = self.storage.data
        if buf is None:
            raise pickle.UnpicklingError("tensor refers to a storage that the file does not contain")
        last = self.offset + sum((n - 1) * s for n, s in zip(self.size, self.stride) if n > 0)
        if any(n == 0 for n in self.size):
            return np.zeros(self.size, buf.dtype)
        if last >= buf.size:
            raise pickle.UnpicklingError("tensor extends past the end of its storage")
        item = buf.dtype.itemsize
        view = np.lib.stride_tricks.as_strided(
            buf[self.offset:], shape=self.size, strides=[s * item for s in self.stride])
        return np.array(view)


def _rebuild_tensor(storage, storage_offset, size, stride, *unused):
    """Covers torch._utils._rebuild_tensor and _rebuild_tensor_v2 (extra args: grad flag, hooks)."""
    return _TensorRef(storage, storage_offset, size, stride)


def _rebuild_parameter(data, requires_grad=False, backward_hooks=None, *unused):
    if not isinstance(data, _TensorRef):
        raise pickle.UnpicklingError("parameter rebuild without a tensor")
    return data


_ALLOWED = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
}


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that resolves only state-dict globals; storages come from `persistent_load`."""

    def __init__(self, file, storages: dict[str, _Storage], read_zip_record=None):
        super().__init__(file)
        self._storages, self._read_zip_record = storages, read_zip_record

    def find_class(self, module, name):
        if (module, name) in _ALLOWED:
            return _ALLOWED[(module, name)]
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(name)
        raise pickle.UnpicklingError(f"refused global {module}.{name}: not part of a tensor state dict")

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage"):
            raise pickle.UnpicklingError(f"refused persistent id {pid!r}")
        stype, key, numel = pid[1], str(pid[2]), pid[4]
        name = getattr(stype, "name", None)
        if not (isinstance(stype, _StorageType) and isinstance(name, str) and name in _STORAGE_DTYPES
                and isinstance(numel, int) and numel >= 0):
            raise pickle.UnpicklingError("malformed storage record")
        dtype = np.dtype(_STORAGE_DTYPES[name])  # never trust attributes a pickle could have set
        if len(pid) > 5 and pid[5] is not None:
            raise pickle.UnpicklingError("storage views are not supported")
        if key not in self._storages:
            st = _Storage(dtype, numel)
            if self._read_zip_record is not None:
                raw = self._read_zip_record(key)
                if len(raw) < numel * dtype.itemsize:
                    raise pickle.UnpicklingError(f"storage {key}: record truncated")
                st.data = np.frombuffer(raw, dtype=dtype.newbyteorder("<"), count=numel)
            self._storages[key] = st
        return self._storages[key]


def _materialise(obj):
    if isinstance(obj, _TensorRef):
        return obj.materialise()
    if isinstance(obj, dict):
        return collections.OrderedDict((k, _materialise(v)) for k, v in obj.items())
    if isinstance(obj, (list, tuple)):
        return type(obj)(_materialise(v) for v in obj)
    return obj


def _load_legacy(f) -> object:
    storages: dict[str, _Storage] = {}
    header = [RestrictedUnpickler(f, storages).load() for _ in range(3)]
    if header[0] != LEGACY_MAGIC:
        raise pickle.UnpicklingError("not a torch legacy file (bad magic number)")
    if not isinstance(header[2], dict) or not header[2].get("little_endian", False):
        raise pickle.UnpicklingError("only little-endian torch files are supported")
    obj = RestrictedUnpickler(f, storages).load()
    keys = RestrictedUnpickler(f, storages).load()
    if not isinstance(keys, list):
        raise pickle.UnpicklingError("malformed storage key list")
    for key in keys:
        st = storages[str(key)]
        count = int(np.frombuffer(f.read(8), dtype="<i8")[0])
        if count != st.numel:
            raise pickle.UnpicklingError(f"storage {key}: {count} elements on disk, {st.numel} declared")
        raw = f.read(count * st.dtype.itemsize)
        if len(raw) != count * st.dtype.itemsize:
            raise pickle.UnpicklingError(f"storage {key}: file truncated")
        st.data = np.frombuffer(raw, dtype=st.dtype.newbyteorder("<"))
    return obj


def _load_zip(path: Path) -> object:
    with zipfile.ZipFile(path) as zf:
        pkl = [n for n in zf.namelist() if n.endswith("/data.pkl") or n == "data.pkl"]
        if len(pkl) != 1:
            raise pickle.UnpicklingError("zip file without exactly one data.pkl")
        prefix = pkl[0][: -len("data.pkl")]
        reader = lambda key: zf.read(f"{prefix}data/{key}")  # noqa: E731
        return RestrictedUnpickler(io.BytesIO(zf.read(pkl[0])), {}, reader).load()


def load_state_dict(path: str | Path) -> dict[str, np.ndarray]:
    """Load a `torch.save`d state dict as an ordered {name: ndarray} without torch.

    Raises `pickle.UnpicklingError` if the file needs any global other than tensor rebuilds,
    typed storages and `OrderedDict` (e.g. a pickle that would call `os.system`).
    """
    path = Path(path)
    if zipfile.is_zipfile(path):
        obj = _load_zip(path)
    else:
        with open(path, "rb") as f:
            obj = _load_legacy(f)
    out = _materialise(obj)
    if not isinstance(out, dict):
        raise pickle.UnpicklingError(f"expected a state dict, found {type(out).__name__}")
    return out
