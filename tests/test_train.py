"""Training: config errors, data errors before training, lr schedule, kill-and-resume, 2 processes."""

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from vsrdb.cli import main
from vsrdb.train.config import ConfigError, load_config

from conftest import synth_photo_dataset


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return synth_photo_dataset(tmp_path_factory.mktemp("data"), (160, 200), photo_size=(64, 80))


def write_config(path: Path, dataset: Path, run_dir: Path, **extra) -> Path:
    cfg = {"model": "fmanet-tiny",
           "data": {"layout": "reds", "root": str(dataset), "val_root": str(dataset), "patch": 12, "batch": 2,
                    "workers": 0, "val_windows": 1, "flow": "dis"},
           "stages": {"netd": {"iterations": 8}, "joint": {"iterations": 8}},
           "run_dir": str(run_dir), "checkpoint_every": 2, "val_every": 100, "log_every": 1, "threads": 1}
    for key, value in extra.items():
        node = cfg
        *parents, last = key.split(".")
        for p in parents:
            node = node[p]
        node[last] = value
    path.write_text(yaml.safe_dump(cfg))
    return path


def losses(run_dir: Path) -> list[tuple]:
    with open(run_dir / "log.csv") as f:
        return [(r["stage"], r["step"], r["total"], r["lr_d"], r["lr_r"]) for r in csv.DictReader(f) if r["total"]]


def test_unknown_config_key_is_named(tmp_path, dataset):
    path = write_config(tmp_path / "c.yaml", dataset, tmp_path / "run")
    data = yaml.safe_load(path.read_text())
    data["data"]["pach"] = 8
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError, match=r"unknown key 'data\.pach'"):
        load_config(path)


def test_a_stage_can_set_its_own_batch(tmp_path, dataset, monkeypatch):
    import vsrdb.train.trainer as trainer

    seen = []

    class Recording(trainer.StepSampler):
        def __init__(self, n, batch, **kw):
            seen.append(batch)
            super().__init__(n, batch, **kw)

    monkeypatch.setattr(trainer, "StepSampler", Recording)
    cfg = write_config(tmp_path / "c.yaml", dataset, tmp_path / "run", **{"stages.netd": {"iterations": 2, "batch": 3},
                                                                          "stages.joint": {"iterations": 2}})
    assert main(["train", str(cfg), "--quiet"]) == 0
    assert seen == [3, 2]  # netd its own, joint data.batch


@pytest.mark.parametrize("edit,message", [
    (lambda ds: ds / "missing", "missing folder"),
    ("count", "frame counts differ"),
    ("garbage", "unreadable image"),
])
def test_bad_data_fails_before_training(tmp_path, dataset, capsys, edit, message):
    import shutil
    root = tmp_path / "copy"
    shutil.copytree(dataset, root)
    if edit == "count":
        sorted((root / "train_sharp" / "001").glob("*.png"))[-1].unlink()
    elif edit == "garbage":
        sorted((root / "train_blur_bicubic/X4/000").glob("*.png"))[2].write_bytes(b"\x89PNG broken")
    else:
        root = edit(root)
    cfg = write_config(tmp_path / "c.yaml", root, tmp_path / "run")
    assert main(["train", str(cfg), "--quiet"]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "run" / "checkpoints" / "netd_last.pt").exists()


def test_older_stage_keys_still_set_the_stages(tmp_path, dataset):
    """stage1/stage2 (before stages had names) are FMA-Net's netd and joint, and a one-stage family's only stage."""
    from vsrdb.models import build
    from vsrdb.train.trainer import _stage_settings

    path = write_config(tmp_path / "c.yaml", dataset, tmp_path / "run")
    data = yaml.safe_load(path.read_text())
    del data["stages"]
    data.update(stage1={"iterations": 5, "lr": 1e-3}, stage2={"iterations": 7})
    path.write_text(yaml.safe_dump(data))
    cfg = load_config(path)
    tiny = build("fmanet-tiny")
    fmanet = _stage_settings(cfg, tiny.training_stages(tiny.loss_weights(cfg.loss)))
    assert (fmanet["netd"].iterations, fmanet["netd"].lr, fmanet["joint"].iterations) == (5, 1e-3, 7)
    jffra = build("jffra-cpu")
    assert _stage_settings(cfg, jffra.training_stages(jffra.loss_weights(cfg.loss)))["main"].iterations == 7
    data["stages"] = {"jont": {"iterations": 3}}
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError, match="stages.jont: fmanet-tiny trains in stage.s. netd, joint"):
        _stage_settings(load_config(path), tiny.training_stages(tiny.loss_weights(cfg.loss)))


def test_two_stages_with_halving_schedule_on_both_optimisers(tmp_path, dataset):
    cfg = write_config(tmp_path / "c.yaml", dataset, tmp_path / "run", **{"stages.netd.iterations": 20,
                                                                          "stages.joint.iterations": 20})
    assert main(["train", str(cfg), "--quiet"]) == 0
    rows = losses(tmp_path / "run")
    stage2 = {int(step): (float(d), float(r)) for stage, step, _, d, r in rows if stage == "joint"}
    # milestones at 70/85/95 % of 20 iterations: steps 14, 17, 19
    assert stage2[13] == (2e-4, 2e-4) and stage2[14] == (1e-4, 1e-4)
    assert stage2[17] == (5e-5, 5e-5) and stage2[19] == (2.5e-5, 2.5e-5)
    assert (tmp_path / "run" / "model" / "config.json").exists()
    assert (tmp_path / "run" / "stage1_netd" / "config.json").exists()
    assert (tmp_path / "run" / "tb").is_dir()


def _run(args, **kw):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "vsrdb.cli", *args], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, **kw)


def kill_at_checkpoint(proc: subprocess.Popen, ckpt: Path, *, timeout: float) -> None:
    """SIGKILL a training process as soon as it has written ``ckpt`` (or after ``timeout`` s)."""
    deadline = time.time() + timeout
    while not ckpt.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()


def test_kill_and_resume_follows_the_same_trajectory(tmp_path, dataset):
    whole = write_config(tmp_path / "a.yaml", dataset, tmp_path / "a", **{"stages.netd.iterations": 30})
    assert main(["train", str(whole), "--quiet"]) == 0
    cfg = write_config(tmp_path / "b.yaml", dataset, tmp_path / "b", **{"stages.netd.iterations": 30})
    ckpt = tmp_path / "b" / "checkpoints" / "netd_last.pt"
    kill_at_checkpoint(_run(["train", str(cfg), "--quiet"]), ckpt, timeout=60)
    assert ckpt.exists() and not (tmp_path / "b" / "model").exists()  # killed mid-run
    assert main(["train", str(cfg), "--quiet"]) == 2  # a started run is not silently restarted
    # As an earlier vsrdb named it (before stages had names): a run it started resumes too.
    ckpt.rename(ckpt.with_name("stage1_last.pt"))
    assert main(["train", str(cfg), "--resume", "--quiet"]) == 0
    assert losses(tmp_path / "b") == losses(tmp_path / "a")


def test_two_processes_match_one_with_the_same_global_batch(tmp_path, dataset):
    one = write_config(tmp_path / "one.yaml", dataset, tmp_path / "one", **{"stages.netd.iterations": 3,
                                                                           "stages.joint.iterations": 3})
    assert main(["train", str(one), "--quiet"]) == 0
    two = write_config(tmp_path / "two.yaml", dataset, tmp_path / "two", **{"stages.netd.iterations": 3,
                                                                           "stages.joint.iterations": 3})
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    import socket
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
                           f"--master_port={port}",
                           "-m", "vsrdb.train", str(two), "--quiet"], env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    a, b = losses(tmp_path / "one"), losses(tmp_path / "two")
    assert [r[:2] for r in a] == [r[:2] for r in b]
    assert all(abs(float(x[2]) - float(y[2])) <= 1e-5 * max(1.0, abs(float(x[2]))) for x, y in zip(a, b))
    import vsrdb
    wa = vsrdb.load_checkpoint(tmp_path / "one" / "model").state_dict()
    wb = vsrdb.load_checkpoint(tmp_path / "two" / "model").state_dict()
    assert max((wa[k] - wb[k]).abs().max().item() for k in wa) < 1e-4


def test_bf16_autocast_trains_close_to_fp32_and_old_bool_configs_still_load(tmp_path, dataset, capsys):
    short = {"stages.netd.iterations": 4, "stages.joint.iterations": 4}
    runs = {}
    for amp in ("fp32", "bf16"):
        cfg = write_config(tmp_path / f"{amp}.yaml", dataset, tmp_path / amp, amp=amp, **short)
        assert main(["train", str(cfg), "--quiet"]) == 0
        runs[amp] = [float(total) for _, _, total, _, _ in losses(tmp_path / amp)]
    assert "autocast precision bf16" in capsys.readouterr().err
    fp32, bf16 = runs["fp32"], runs["bf16"]
    assert len(fp32) == len(bf16) == 8
    # Same data and seeds: the losses follow fp32's within bf16's rounding, but are not fp32's.
    assert all(abs(a - b) <= 0.05 * abs(a) + 1e-3 for a, b in zip(fp32, bf16)), (fp32, bf16)
    assert fp32 != bf16
    legacy = write_config(tmp_path / "legacy.yaml", dataset, tmp_path / "legacy", amp=True)
    assert load_config(legacy).amp == "bf16"
    bad = write_config(tmp_path / "bad.yaml", dataset, tmp_path / "bad", amp="int8")
    with pytest.raises(ConfigError, match="amp must be one of"):
        load_config(bad)


@pytest.mark.parametrize("path", sorted((Path(__file__).parent.parent / "configs").rglob("*.yaml")),
                         ids=lambda p: p.relative_to(p.parent.parent).as_posix())
def test_every_shipped_config_loads_and_names_its_models_stages(path):
    import vsrdb
    from vsrdb.train.trainer import _stage_settings

    cfg = load_config(path)
    model = vsrdb.build(cfg.model, **cfg.model_args)
    # raises on a stage the family lacks
    settings = _stage_settings(cfg, model.training_stages(model.loss_weights(cfg.loss)))
    assert all(s.iterations > 0 and s.lr > 0 and (s.batch or cfg.data.batch) > 0 for s in settings.values())
