"""Split runs (adacache/shard.py): a tiny ComfyUI Wan on 2 CPU processes over gloo, with xDiT's
real long-context attention (xfuser, yunchang) injected as Raylight injects it
(tests/shard_harness.py), reproduces the single-process run: the same computed steps, the same
distances, and an output as close to one process's as the engine's own difference allows."""

from __future__ import annotations

import pytest
import shard_harness
import torch
from comfyui_adacache.adacache.metrics import METRICS, metric_sample, relative_distance
from comfyui_adacache.adacache.shard import (
    COMPUTES_ELSEWHERE,
    ShardContext,
    ShardError,
    _ratio,
    _sums,
)

EVEN = {"frames": 4, "size": 8}  # 64 tokens: 32 on each rank
ODD = {"frames": 3, "size": 10}  # 75 tokens: rank 1 holds one pad token
# distances here are 0.02-0.035 per step: rate 3 wherever the schedule may reuse
CODEBOOK = ((0.05, 1.0), (3, 1))
NEVER_REUSE, ALWAYS_REUSE = ((1.0,), (1,)), ((1.0,), (4,))
CALIBRATE = {"preset": "calibrate"}


def config(codebook=CODEBOOK) -> dict:
    """A config as plain data (shard_harness.adacache_config). MoReg: motion is ~0.06 here, so
    its factor stays near 1 (the rule's decisions stand) and the split run gathers residuals."""
    return {"codebook": codebook, "moreg": {"norm_a": 0.06, "norm_p": 1.0}}


@pytest.fixture(scope="module")
def single():
    """The single-process runs every split run is compared with."""
    runs = {(name, size): (cfg, lat)
            for name, cfg in (("vanilla", None), ("adacache", config()))
            for size, lat in (("even", EVEN), ("odd", ODD))}
    runs["calibrate", "odd"] = (CALIBRATE, ODD)
    return {key: shard_harness.run_wan(
        shard_harness.patched_wan(shard_harness.adacache_config(cfg)), lat
    ) for key, (cfg, lat) in runs.items()}


@pytest.fixture(scope="module")
def split_runs(tmp_path_factory):
    """Two processes (started once): the Ulysses split, then the CFG split."""
    for name in ("xfuser", "yunchang"):  # make setup installs them (pinned, --no-deps)
        pytest.importorskip(name, reason=f"{name} is installed by make setup")
    ulysses = {"runs": {
        "vanilla even": (None, EVEN), "adacache even": (config(), EVEN),
        "vanilla odd": (None, ODD), "adacache odd": (config(), ODD),
        "calibrate odd": (CALIBRATE, ODD),
        # rank 1 alone wants to compute every step
        "disagree": ({0: config(ALWAYS_REUSE), 1: config(NEVER_REUSE)}, EVEN),
    }}
    cfg = {"cfg_degree": 2, "runs": {
        "vanilla even": (None, EVEN), "adacache even": (config(), EVEN),
    }}
    return shard_harness.spawn([ulysses, cfg], tmp_path_factory.mktemp("split"))


@pytest.fixture(scope="module")
def ulysses(split_runs):
    return [rank[0] for rank in split_runs]


@pytest.fixture(scope="module")
def cfg_split(split_runs):
    return [rank[1] for rank in split_runs]


def assert_reproduces(ranks: list[dict], single: dict, size: str) -> float:
    """Every rank ran the single-process schedule and output; returns the output difference."""
    ref = single[("adacache", size)]
    engine = (ranks[0][f"vanilla {size}"]["out"] - single[("vanilla", size)]["out"]).abs().max()
    trace = ref["summary"]["trace"]
    assert "." in ref["summary"]["pattern"], "the comparison needs reused steps"
    for rank in ranks:
        run = rank[f"adacache {size}"]
        assert run["summary"]["pattern"] == ref["summary"]["pattern"]
        for mine, theirs in zip(run["summary"]["trace"], trace, strict=True):
            for key in ("distance", "motion"):
                if theirs[key] is None:
                    assert mine[key] is None
                else:
                    assert mine[key] == pytest.approx(theirs[key], abs=1e-3)
        assert torch.equal(run["out"], ranks[0][f"adacache {size}"]["out"])
        # one decision for the run: every rank measured exactly the same distances
        assert [r["distance"] for r in run["summary"]["trace"]] == [
            r["distance"] for r in ranks[0][f"adacache {size}"]["summary"]["trace"]
        ]
    diff = (ranks[0][f"adacache {size}"]["out"] - ref["out"]).abs().max().item()
    print(f"{size}: schedule {ref['summary']['pattern']}, output difference {diff:.2e} "
          f"(the engine's own {engine.item():.2e})")
    assert diff <= 2 * max(engine.item(), 1e-6), (diff, engine.item())
    return diff


def test_ulysses_reproduces_the_single_process_run(ulysses, single):
    assert_reproduces(ulysses, single, "even")


def test_odd_token_count_with_padding_reproduces_it(ulysses, single):
    assert_reproduces(ulysses, single, "odd")


def test_cfg_parallel_reproduces_it(cfg_split, single):
    assert_reproduces(cfg_split, single, "even")


def test_calibration_on_a_split_sequence_records_the_single_process_sample(ulysses, single):
    expected = single[("calibrate", "odd")]["summary"]["calibration_sample"]
    for rank in ulysses:
        sample = rank["calibrate odd"]["summary"]["calibration_sample"]
        assert sample["distances"] == pytest.approx(expected["distances"], abs=1e-3)
        assert sample["motions"] == pytest.approx(expected["motions"], abs=1e-3)
        assert len(sample["gap_distances"]) == len(expected["gap_distances"])
        for mine, theirs in zip(sample["gap_distances"], expected["gap_distances"], strict=True):
            assert mine == pytest.approx(theirs, abs=1e-3)


def test_one_rank_alone_wanting_to_compute_makes_every_rank_compute(ulysses):
    runs = [rank["disagree"] for rank in ulysses]  # it finished: no hang
    for run in runs:
        assert set(run["summary"]["pattern"]) == {"C"}
    reasons = runs[0]["summary"]["call_reasons"]
    assert any(COMPUTES_ELSEWHERE in r for r in reasons), reasons
    vanilla = ulysses[0]["vanilla even"]["out"]
    assert torch.allclose(runs[0]["out"], vanilla, atol=1e-6)


@pytest.mark.parametrize("kwargs, words", [
    ({"engine": "pipefusion"}, "engine 'pipefusion'"),
    ({"pipeline_size": 2}, "PipeFusion"),
    ({"data_parallel_size": 2}, "data parallelism"),
    ({"seq_rank": 2, "seq_size": 2}, "sequence rank 2"),
])
def test_unsupported_splits_are_refused_with_a_clear_error(kwargs, words):
    with pytest.raises(ShardError, match=words):
        ShardContext(**kwargs)


def test_tokens_besides_the_video_are_refused_naming_them():
    from comfyui_adacache.adacache.families.wan import WAN

    shard = ShardContext(seq_rank=0, seq_size=2)
    video = (1, 16, 4, 8, 8)  # 4 x 4 x 4 = 64 tokens: 32 a rank
    assert shard.sequence_length(WAN, video, 0, 32) == 64
    with pytest.raises(ShardError, match="Wan's reference-image tokens"):
        shard.sequence_length(WAN, video, 0, 36)  # 8 reference tokens prepended
    with pytest.raises(ShardError, match="in a way AdaCache does not know"):
        shard.sequence_length(WAN, video, 0, 30)


# -- the core's shard arithmetic, without processes ------------------------------------------
def shards(x: torch.Tensor, ranks: int) -> list[torch.Tensor]:
    """``x`` [B, L, D] padded at its end and split as xDiT splits it."""
    pad = -x.shape[1] % ranks
    padded = torch.cat([x, torch.full_like(x[:, :pad], 7.0)], dim=1)  # padding never measured
    return list(padded.chunk(ranks, dim=1))


@pytest.mark.parametrize("length, ranks", [(3001, 3), (75, 2), (1024, 4)])
def test_the_shards_samples_are_the_whole_sequences_sample(length, ranks):
    x = torch.randn(1, length, 8, generator=torch.Generator().manual_seed(length))
    parts = [ShardContext(seq_rank=r, seq_size=ranks).metric_sample(shard, length)
             for r, shard in enumerate(shards(x, ranks))]
    assert torch.equal(torch.cat(parts), metric_sample(x))  # the same rows, in order


@pytest.mark.parametrize("metric", METRICS)
def test_the_shards_sums_give_the_whole_sequences_distance(metric):
    g = torch.Generator().manual_seed(1)
    a, b = torch.randn(600, 8, generator=g), torch.randn(600, 8, generator=g)
    sums = sum(_sums(a[i:i + 200], b[i:i + 200]) for i in (0, 200, 400))
    assert _ratio(sums, metric) == pytest.approx(relative_distance(a, b, metric), rel=1e-5)


def test_outside_a_split_run_the_worker_apply_is_the_ordinary_apply():
    from comfyui_adacache.adacache.shard import SHARD_OPTION
    from comfyui_adacache.nodes.xdit import apply_in_worker

    config = shard_harness.adacache_config({"codebook": CODEBOOK})
    model = shard_harness.patched_wan(config, apply=apply_in_worker)
    options = model.model_options["transformer_options"]
    assert SHARD_OPTION not in options and "adacache_handle" in options


def test_one_all_reduce_adds_the_sums_of_every_stream_of_a_call(monkeypatch):
    """Catches one all-reduce per stream (the issue asks one per compute step): the changes
    of all of a call's streams and metric blocks come from a single all-reduce, each equal to
    that stream's own (a process group of one: the sums are this rank's)."""
    import torch.distributed as dist

    g = torch.Generator().manual_seed(2)
    pairs = [({p: torch.randn(40, 8, generator=g) for p in (3, 7)},
              {p: torch.randn(40, 8, generator=g) for p in (3, 7)}) for _ in range(3)]
    dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
    try:
        reduced = []
        real = dist.all_reduce
        monkeypatch.setattr(dist, "all_reduce",
                            lambda t, *a, **k: reduced.append(tuple(t.shape)) or real(t, *a, **k))
        out = ShardContext(seq_size=2).distances(pairs, "l1")
    finally:
        dist.destroy_process_group()
    assert reduced == [(6, 6)]  # 3 streams x 2 blocks, 6 sums each, in one all-reduce
    for (current, previous), changes in zip(pairs, out, strict=True):
        assert changes == pytest.approx(
            {p: relative_distance(current[p], previous[p], "l1") for p in (3, 7)}, rel=1e-5)
