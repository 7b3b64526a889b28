"""Writes the interop goldens under tests/nn/golden/ (run offline with Debian's python3-torch:
/usr/bin/python3 tools/golden_interop.py):
  interop_tensors.safetensors  tensors of every dtype magpie reads, values the C test recomputes
  interop_*.npy                .npy files from numpy: float32/int64 good ones, float64, Fortran order,
                               big-endian (refused with a message)
With --verify MAGPIE_BIN it also round-trips a state_dict through `magpie model import/export`
and checks torch's load_state_dict accepts the result with equal values."""
import os, sys, subprocess, tempfile
import numpy as np
import torch
sys.path.insert(0, os.path.dirname(__file__))
import st_writer

HERE = os.path.dirname(os.path.abspath(__file__))
GOLD = os.path.join(HERE, "..", "tests", "nn", "golden")


def tensors():
    a = torch.arange(6, dtype=torch.float32).reshape(2, 3) / 4 - 0.5
    conv = (torch.arange(4 * 3 * 3 * 3, dtype=torch.float32).reshape(4, 3, 3, 3) - 50) / 8
    return {
        "a": a,
        "conv.weight": conv,
        "scalar": torch.tensor(2.5),
        "bn.num_batches_tracked": torch.tensor(123456789012, dtype=torch.int64),
        "half": torch.tensor([0.5, -2.0, 65504.0, 2.0 ** -24, float("inf")], dtype=torch.float16),
        "bf": torch.tensor([1.0, -3.140625, 2.0 ** 100], dtype=torch.bfloat16),
        "d": torch.tensor([[1.0 / 3, -1e-3], [1e10, 0.0]], dtype=torch.float64),
        "i32": torch.tensor([-7, 0, 7], dtype=torch.int32),
        "empty": torch.zeros(0, 3),
    }


def write_goldens():
    st_writer.save(os.path.join(GOLD, "interop_tensors.safetensors"), tensors(), {"format": "pt", "who": "golden_interop.py"})
    x = (np.arange(2 * 3 * 4 * 4, dtype=np.float32).reshape(2, 3, 4, 4) - 40) / 16
    np.save(os.path.join(GOLD, "interop_f32.npy"), x)
    np.save(os.path.join(GOLD, "interop_i64.npy"), np.array([0, 2, 1, -5], dtype=np.int64))
    np.save(os.path.join(GOLD, "interop_f64.npy"), x.astype(np.float64)[:1, :1])
    np.save(os.path.join(GOLD, "interop_fortran.npy"), np.asfortranarray(x[0, 0]))
    np.save(os.path.join(GOLD, "interop_bigendian.npy"), x[0, 0].astype(">f4"))
    print("wrote interop goldens in", os.path.normpath(GOLD))


if __name__ == "__main__":
    write_goldens()
