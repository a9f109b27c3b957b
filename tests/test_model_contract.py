"""The declared model contract (compresslab.models.base.CompressLabModel): register_model refuses a class that lacks
what general code calls, in one line, where the class is defined; the built-in models satisfy it."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest
from compressai.models import CompressionModel

from compresslab import models
from compresslab.models import CompressLabModel, ModelContractError, register_model
from compresslab.models.base import REQUIRED_METHODS, pad_multiple_of
from compresslab.models.registry import _REGISTRY


def test_every_builtin_model_is_complete_and_declares_its_base():
    assert set(REQUIRED_METHODS) == {"compress_latents", "decompress", "encode_latents", "latent_forward",
                                     "string_layout"}
    for name in models.model_names():
        cls = models.get_model_class(name)
        assert issubclass(cls, CompressLabModel) and not cls.__abstractmethods__, name
        assert cls.registry_name == name and cls.curve_label({}) == name
        if cls.requires_base_ckpt:
            assert cls.base_model in models.model_names()
    adaptive = models.get_model_class("adaptive")
    assert adaptive.curve_label({"ideal": True}) == "adaptive-ideal"  # oracle points never join the real curve


def _cls(**attrs):
    body = {"encode_latents": lambda s, x: {}, "latent_forward": lambda s, l: {}, "compress_latents": lambda s, l: {},
            "decompress": lambda s, st, sh: {}, "string_layout": lambda s, sh: [[1]], **attrs}
    return type("Tiny", (CompressLabModel, CompressionModel), body)


@pytest.mark.parametrize("drop, message", [
    ("string_layout", "does not implement string_layout"),
    ("decompress", "does not implement decompress"),
])
def test_a_model_missing_a_method_is_refused_naming_it(drop, message):
    cls = _cls()
    delattr(cls, drop)
    cls.__abstractmethods__ = frozenset({drop})  # what ABCMeta computes for a class defined without it
    with pytest.raises(ModelContractError, match=message):
        register_model("tiny-missing")(cls)
    assert "tiny-missing" not in _REGISTRY


def test_contract_attributes_are_checked():
    with pytest.raises(ModelContractError, match="requires_base_ckpt but no base_model"):
        register_model("tiny-base")(_cls(requires_base_ckpt=True))
    with pytest.raises(ModelContractError, match="pad_multiple must be a positive int"):
        register_model("tiny-pad")(_cls(pad_multiple=0))
    with pytest.raises(ModelContractError, match="must subclass compresslab.models.CompressLabModel"):
        register_model("tiny-plain")(CompressionModel)
    assert not {"tiny-base", "tiny-pad", "tiny-plain"} & set(_REGISTRY)


def test_pad_multiple_of_plain_compressai_models_is_compressais():
    from compressai.models import FactorizedPrior

    assert pad_multiple_of(FactorizedPrior(8, 8)) == 64
    assert pad_multiple_of(_cls(pad_multiple=128)()) == 128


@pytest.mark.slow
def test_a_broken_plugin_fails_at_import_with_one_line(tmp_path):
    plugin = tmp_path / "my_models.py"
    plugin.write_text(textwrap.dedent('''
        from compressai.models import CompressionModel
        from compresslab.models import CompressLabModel, register_model

        @register_model("half-done")
        class HalfDone(CompressLabModel, CompressionModel):
            def encode_latents(self, x):
                return {"y": x}
    '''))
    env = {**os.environ, "COMPRESSLAB_PLUGINS": str(plugin), "WANDB_MODE": "offline"}
    r = subprocess.run([sys.executable, "-m", "compresslab", "train", "model=factorized", "trainer.max_steps=0"],
                       cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    err = [line for line in r.stderr.strip().splitlines() if line.strip()]
    assert r.returncode != 0 and "Traceback" not in r.stderr, r.stderr[-3000:]
    assert "model 'half-done' (compresslab_plugin_my_models.HalfDone) does not implement compress_latents, " \
           "decompress, latent_forward, string_layout" in err[-1], r.stderr[-3000:]


def test_zoo_architectures_come_from_the_classes_declarations():
    """io.zoo knows no model: each class's own compressai_arch fills its table (a subclass that inherits it does
    not claim it again), and a second model claiming an architecture is refused."""
    from compresslab.io.zoo import ARCHITECTURES

    declared = {cls.compressai_arch: name for name in models.model_names()
                if "compressai_arch" in vars(cls := models.get_model_class(name)) and cls.compressai_arch}
    assert ARCHITECTURES == declared == {"bmshj2018-factorized": "factorized", "bmshj2018-hyperprior": "hyperprior",
                                         **{a: a for a in ("mbt2018-mean", "mbt2018", "cheng2020-anchor", "cheng2020-attn")}}
    sub = type("Sub", (models.get_model_class("factorized"),), {})
    register_model("tiny-sub-factorized")(sub)  # inherits compressai_arch: registers, claims nothing
    assert ARCHITECTURES["bmshj2018-factorized"] == "factorized"
    with pytest.raises(ValueError, match="already served by model 'factorized'"):
        register_model("tiny-claims-factorized")(_cls(compressai_arch="bmshj2018-factorized"))
    assert "tiny-claims-factorized" not in _REGISTRY
    del _REGISTRY["tiny-sub-factorized"]
