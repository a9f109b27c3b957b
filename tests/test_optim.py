import pytest
import torch

from compresslab.training.optim import build_scheduler, warmup_cosine


def test_warmup_cosine_ramps_decays_and_holds():
    f = warmup_cosine(warmup=10, total=110, final_ratio=0.05)
    assert f(0) == pytest.approx(0.1) and f(9) == pytest.approx(1.0)
    assert f(60) == pytest.approx(0.05 + 0.95 * 0.5)  # half-way through the cosine
    assert f(110) == pytest.approx(0.05) and f(500) == pytest.approx(0.05)
    assert all(f(s) >= f(s + 1) for s in range(10, 200))


def test_cosine_scheduler_drives_the_optimizer_lr():
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.Adam([p], lr=1e-3)
    sched = build_scheduler(opt, {"name": "cosine", "warmup_steps": 2, "total_steps": 12, "final_ratio": 0.0})
    lrs = []
    for _ in range(12):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[0] == pytest.approx(5e-4) and lrs[1] == pytest.approx(1e-3)
    assert opt.param_groups[0]["lr"] == pytest.approx(0.0, abs=1e-12)
    with pytest.raises(ValueError, match="total_steps"):
        build_scheduler(opt, {"name": "cosine", "warmup_steps": 5, "total_steps": 5})
