"""``hetpart profile --links``: bandwidth and latency between a cluster file's two hosts measured
on a throwaway loopback Ray cluster (one for this module, started and torn down by the
command, which leaves nothing behind), written into the file (as ``-o`` here, the input
untouched), and priced by a plan compiled with it; bad input fails in one line naming the
key or address."""

from __future__ import annotations

import json
from pathlib import Path

import onnx
import pytest
from onnx import TensorProto, helper

ray = pytest.importorskip("ray", reason="needs the ray extra: pip install 'hetpart[ray]'")

from test_ray_local import (  # noqa: E402  (its leftover checks and private TMPDIR)
    _assert_nothing_left,
    _hetpart,
    _shm,
    private_tmp,  # noqa: F401  (a fixture)
)

from partitioner.cli import main  # noqa: E402
from partitioner.cluster.file import cluster_from_toml  # noqa: E402
from partitioner.plan.io import load_plan  # noqa: E402
from partitioner.report.fmt import fmt_time  # noqa: E402
from partitioner.testing.host_clusters import cpu_device_toml, hosts_cluster_toml  # noqa: E402

pytestmark = [pytest.mark.ray]

TWO_HOSTS = "# two boxes\n" + hosts_cluster_toml()
#: Relu on 1 MiB, then Relu on the other host: one 1 MiB transfer a -> b.
WIDTH = 2**18


def _chain(path: Path) -> Path:
    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["h"], name="first"),
         helper.make_node("Relu", ["h"], ["y"], name="second")], "chain",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, WIDTH])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, WIDTH])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 10
    onnx.save(model, path)
    return path


def test_links_measured_on_ray_local_are_written_and_priced(
        tmp_path: Path, private_tmp: Path, capsys: pytest.CaptureFixture[str]) -> None:  # noqa: F811
    source = tmp_path / "boxes.toml"
    source.write_text(TWO_HOSTS)
    measured = tmp_path / "measured.toml"
    shm = _shm()
    done = _hetpart(private_tmp, "profile", "--links", "--ray", "local", "--cluster",
                    str(source), "-o", str(measured), "--repeats", "3", "--json")
    assert done.returncode == 0, done.stderr
    record = json.loads(done.stdout)
    _assert_nothing_left(private_tmp, shm, done.stderr)  # its local cluster torn down
    assert source.read_text() == TWO_HOSTS and "# two boxes" in measured.read_text()
    by_pair = {(m["src_host"], m["dst_host"]): m for m in record["links"]}
    assert set(by_pair) == {("box-a", "box-b"), ("box-b", "box-a")}
    for m in by_pair.values():
        assert m["bandwidth_bytes_per_s"] > 0 and m["latency_s"] >= 0
        assert set(m["sizes"]) == {str(s) for s in record["sizes"]}
        lo, hi = m["rounds_bandwidth_bytes_per_s"]
        assert 0 < lo <= hi
    links = {(lk.src, lk.dst): lk for lk in cluster_from_toml(measured).links}
    ab = links[("cpu-a", "cpu-b")]
    expected = by_pair[("box-a", "box-b")]
    assert ab.bandwidth == pytest.approx(expected["bandwidth_bytes_per_s"], rel=1e-3)
    assert ab.latency_s == pytest.approx(expected["latency_s"], abs=1e-7)

    # A plan across the two hosts prices its one transfer on the measured link.
    plan_dir = tmp_path / "plan"
    assert main(["compile", str(_chain(tmp_path / "chain.onnx")), "--cluster", str(measured),
                 "--pin", "first=cpu-a", "--pin", "second=cpu-b", "-o", str(plan_dir),
                 "--time-limit", "2"]) == 0
    plan = load_plan(plan_dir)
    (transfer,) = plan.transfers
    assert (transfer.src_device, transfer.dst_device, transfer.nbytes) == ("cpu-a", "cpu-b",
                                                                           4 * WIDTH)
    assert transfer.predicted_s == pytest.approx(ab.latency_s + 4 * WIDTH / ab.bandwidth)
    capsys.readouterr()
    assert main(["report", str(plan_dir)]) == 0
    report = capsys.readouterr().out
    (row,) = [line for line in report.splitlines() if "p0 cpu-a -> p1 cpu-b" in line]
    assert fmt_time(transfer.predicted_s) in row


@pytest.mark.parametrize(("text", "ray_address", "message"), [
    (cpu_device_toml("a") + cpu_device_toml("b"), "local",
     "no device names a host"),
    (TWO_HOSTS, "127.0.0.1:9", "cannot connect to Ray cluster '127.0.0.1:9'"),
])
def test_bad_input_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str,
                               ray_address: str, message: str) -> None:
    path = tmp_path / "c.toml"
    path.write_text(text)
    code = main(["profile", "--links", "--ray", ray_address, "--cluster", str(path)])
    err = capsys.readouterr().err
    assert code != 0 and message in err and err.count("\n") == 1
    assert path.read_text() == text
    assert not ray.is_initialized()


def test_links_flags_are_checked(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text(TWO_HOSTS)
    assert main(["profile", "--links", "--cluster", str(path)]) == 2
    assert "needs --ray local or --ray ADDRESS" in capsys.readouterr().err
    assert main(["profile", "--ray", "local"]) == 2
    assert "--ray applies to profile --links only" in capsys.readouterr().err
