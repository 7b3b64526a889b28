#!/usr/bin/python3
"""bench/infer/peer.py — runs ../shared/peers/torch_infer.py unchanged, except that its network
gets the weights of a magpie checkpoint (`magpie model export CKPT F.safetensors`) and that
checkpoint's input normalisation, so both sides run the same network.
Usage: PEER_WEIGHTS=F.safetensors peer.py SLIDE MPP_TARGET PATCH_PX [THREADS] [OUT.png]
(the arguments are torch_infer.py's). MAGPIE_PEERS overrides the peers folder."""
import json, os, runpy, struct, sys

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
PEERS = os.environ.get("MAGPIE_PEERS", os.path.join(HERE, "..", "..", "..", "shared", "peers"))
sys.path.insert(0, PEERS)
import torch_resnet_gn  # noqa: E402

ResNetGN = torch_resnet_gn.ResNetGN

DT = {"F32": np.float32, "F64": np.float64, "I64": np.int64}


def load_safetensors(path):
    """The format: an 8-byte little-endian header length, a JSON header, then raw tensors."""
    b = open(path, "rb").read()
    n = struct.unpack("<Q", b[:8])[0]
    head = json.loads(b[8:8 + n])
    meta = head.pop("__metadata__", {})
    out = {}
    for k, v in head.items():
        s, e = v["data_offsets"]
        out[k] = torch.from_numpy(np.frombuffer(b[8 + n + s:8 + n + e], DT[v["dtype"]]).reshape(v["shape"]).copy())
    return out, meta


class Loaded(torch.nn.Module):
    """ResNetGN with the exported weights; forward normalises [0,1] pixels as magpie does."""

    def __init__(self, ncls=2):
        super().__init__()
        sd, meta = load_safetensors(os.environ["PEER_WEIGHTS"])
        k = int(meta.get("magpie.classes", ncls))
        w = tuple(int(x) for x in meta.get("magpie.arch.widths", "32,64,128,256").split(","))
        self.net = ResNetGN(ncls=k, widths=w)
        self.net.load_state_dict(sd)
        mean = [float(x) for x in meta.get("magpie.norm.mean", "0,0,0").split(",")]
        std = [float(x) for x in meta.get("magpie.norm.std", "1,1,1").split(",")]
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1))

    def forward(self, x):
        return self.net((x - self.mean) / self.std)


torch_resnet_gn.ResNetGN = Loaded  # torch_infer.py imports the name from this module
sys.argv = [os.path.join(PEERS, "torch_infer.py")] + sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
