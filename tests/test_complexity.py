"""`compresslab complexity`: parameters and kMAC/pixel by part (models/complexity.py), checked against a count made
independently from the layers' shapes (forward hooks on every convolution and GDN), and its one-line refusals."""

import json

import pytest
import torch
from compressai.layers import GDN

from compresslab import models
from compresslab.models.complexity import complexity
from conftest import run_py


def hook_count(model, height, width) -> dict[str, float]:
    """MACs by top-level part from the layers themselves: a convolution costs Cin/groups x Cout x k^2 per output
    position (a transposed one per input position), GDN a 1x1 convolution of its channels."""
    macs: dict[str, float] = {}
    handles = []
    for part, child in model.named_children():
        for m in child.modules():
            def hook(mod, inp, out, part=part):
                x = inp[0]
                if isinstance(mod, torch.nn.ConvTranspose2d):
                    n = mod.in_channels * mod.out_channels // mod.groups * mod.kernel_size[0] * mod.kernel_size[1] \
                        * x.shape[-2] * x.shape[-1]
                elif isinstance(mod, torch.nn.Conv2d):
                    n = mod.in_channels // mod.groups * mod.out_channels * mod.kernel_size[0] * mod.kernel_size[1] \
                        * out.shape[-2] * out.shape[-1]
                else:  # GDN
                    n = x.shape[1] ** 2 * x.shape[-2] * x.shape[-1]
                macs[part] = macs.get(part, 0) + n
            if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d, GDN)):
                handles.append(m.register_forward_hook(hook))
    with torch.no_grad():
        model.eval()(torch.rand(1, 3, height, width))
    for h in handles:
        h.remove()
    return {k: v / (height * width) / 1e3 for k, v in macs.items()}


@pytest.mark.parametrize("cfg", [{"name": "factorized", "N": 32, "M": 48}, {"name": "hyperprior", "N": 32, "M": 48},
                                 {"name": "mbt2018-mean", "N": 32, "M": 48}])
def test_macs_by_part_equal_a_count_from_the_layer_shapes(cfg):
    model = models.build(cfg)
    got = complexity(model, 128, 192)
    want = hook_count(model, 128, 192)
    for part in ("g_a", "g_s", "h_a", "h_s"):
        if part in want:
            assert got["kmac_by_part"][part] == pytest.approx(want[part], rel=1e-9), part
    assert got["params"] == sum(p.numel() for p in model.parameters())
    assert got["params_by_part"]["g_a"] == sum(p.numel() for p in model.g_a.parameters())


def test_wider_models_cost_more_and_the_command_writes_its_json(tmp_path):
    out = tmp_path / "c.json"
    r = run_py(["-m", "compresslab", "complexity", "hyperprior", "mbt2018-mean", "mbt2018-mean:M=64", "--set", "N=32",
                "M=48", "--size", "256x128", "--out", str(out)])
    assert r.returncode == 0, r.stderr[-2000:]
    rows = {row["model"]: row for row in json.loads(out.read_text())["rows"]}
    assert rows["hyperprior"]["config"]["N"] == 32 and rows["mbt2018-mean"]["config"]["M"] == 48
    assert rows["mbt2018-mean:M=64"]["config"]["M"] == 64 and rows["mbt2018-mean:M=64"]["config"]["N"] == 32
    # the mean-scale h_s outputs 2M channels where the scale one outputs M: the same g_a/g_s, more h_s
    assert rows["mbt2018-mean"]["kmac_by_part"]["h_s"] > rows["hyperprior"]["kmac_by_part"]["h_s"]
    assert rows["mbt2018-mean"]["kmac_by_part"]["g_a"] == rows["hyperprior"]["kmac_by_part"]["g_a"]
    assert f"hyperprior: {rows['hyperprior']['params']:,} parameters" in r.stdout


@pytest.mark.parametrize("args, says", [(["hyperprior", "--set", "Q=3"], "Could not override 'model.Q'"),
                                        (["hyperprior", "--size", "12"], "WIDTHxHEIGHT"),
                                        (["hyperprior", "--set", "N"], "KEY=VALUE")])
def test_bad_arguments_are_one_line(args, says):
    r = run_py(["-m", "compresslab", "complexity", *args])
    lines = [ln for ln in r.stderr.strip().splitlines() if ln.strip()]
    assert r.returncode == 2 and len(lines) == 1 and says in lines[0], r.stderr[-2000:]
