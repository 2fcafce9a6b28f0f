"""The layers stay in order: model families import nothing from the layers above them, and the
trainer names no family's loss term (it logs whatever a family returns)."""

import ast
from pathlib import Path

import pytest

import vsrdb
from vsrdb.models.family import TRAINING_FLOWS

SRC = Path(vsrdb.__file__).resolve().parent
ABOVE_MODELS = ("train", "data", "restore", "evaluate", "commands", "serve", "cli", "demo")
BATCH_KEYS = {"lr", "hr", "lr_sharp", "flow", "input_flow", "exposure", *TRAINING_FLOWS}


def _imports(path: Path) -> list[tuple[int, str]]:
    """(line, absolute vsrdb module) of every import in a file, relative ones resolved."""
    package = ".".join(path.relative_to(SRC.parent).with_suffix("").parts[:-1])
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            found.append((node.lineno, module))
            if not node.module:  # "from .. import train"
                found += [(node.lineno, f"{module}.{a.name}") for a in node.names]
    return found


def test_models_import_nothing_from_the_layers_above():
    bad = []
    for path in sorted((SRC / "models").rglob("*.py")):
        for line, module in _imports(path):
            parts = module.split(".")
            if parts[0] == "vsrdb" and len(parts) > 1 and parts[1] in ABOVE_MODELS:
                bad.append(f"{path.relative_to(SRC.parent)}:{line}: imports {module}")
    assert not bad, "\n".join(bad)


def _family_terms() -> set[str]:
    terms = set()
    for name in vsrdb.list_models():
        model = vsrdb.build(name)
        weights = model.loss_weights({"temporal": 0.1} if "temporal" in model.loss_weights().__dataclass_fields__
                                     else {})
        for stage in model.training_stages(weights):
            terms |= set(model.loss_terms(stage, weights) or ())
    return terms


def test_the_trainer_names_no_family_loss_term():
    terms = _family_terms() - BATCH_KEYS
    assert {"recon", "anchor_d", "deblur", "contrastive", "total"} <= terms  # the check can fail
    bad = []
    for path in sorted((SRC / "train").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in terms:
                bad.append(f"{path.relative_to(SRC.parent)}:{node.lineno}: {node.value!r}")
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize("name, temporal", [("fmanet-tiny", None), ("fmanet-tiny", 0.2), ("hoffr-cpu", 0.2),
                                            ("jffra-cpu", 0.0), ("fmanetpp-cpu", None)])
def test_declared_terms_are_what_the_loss_returns(name, temporal):
    """loss_terms() is log.csv's header: it must match what training_loss() gives, stage by stage."""
    import torch

    from test_families import _batch

    probe = vsrdb.build(name)
    weights = probe.loss_weights({} if temporal is None else {"temporal": temporal})
    for stage in probe.training_stages(weights):
        model = vsrdb.build(name, **stage.build_args).train()
        torch.manual_seed(0)
        _, terms = model.training_loss(model, _batch(model, stage.window), stage, weights)
        assert set(terms) == set(model.loss_terms(stage, weights)), f"{name}/{stage.name}"


def _bad_imports(paths, rule) -> list[str]:
    return [f"{p.relative_to(SRC.parent)}:{line}: imports {module}"
            for p in paths for line, module in _imports(p) if rule(p, module)]


def test_video_io_is_a_layer_below_restore_serve_evaluate_and_training_data():
    above = ("data", "restore", "serve", "evaluate", "train", "commands", "cli", "demo", "models")
    bad = _bad_imports(sorted((SRC / "video").rglob("*.py")),
                       lambda p, m: m.split(".")[0] == "vsrdb" and len(m.split(".")) > 1 and m.split(".")[1] in above)
    assert not bad, "\n".join(bad)


def test_decoding_and_encoding_do_not_import_each_other():
    pairs = {"decode.py": "vsrdb.video.encode", "encode.py": "vsrdb.video.decode"}
    bad = _bad_imports([SRC / "video" / name for name in pairs], lambda p, m: m.startswith(pairs[p.name]))
    assert not bad, "\n".join(bad)


def test_commands_import_nothing_from_serve_but_the_serve_command():
    paths = [p for p in sorted((SRC / "commands").glob("*.py")) if p.name != "serve.py"]
    bad = _bad_imports(paths, lambda p, m: m.startswith("vsrdb.serve"))
    assert not bad, "\n".join(bad)
