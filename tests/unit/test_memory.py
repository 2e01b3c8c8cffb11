"""The memory a process may use (distnn.memory.room), read from fake /proc and cgroup trees:
cgroup v2 and v1, a parent's limit tighter than the leaf's, no limit, the page cache a
cgroup may reclaim, missing files; each expected figure worked out here by hand."""

from __future__ import annotations

import resource

import pytest

from distnn.memory import UNLIMITED, Room, room

MiB, GiB = 1 << 20, 1 << 30
V1_NO_LIMIT = 9223372036854771712  # what a v1 cgroup without a limit says (2^63 - 4096)


@pytest.fixture(autouse=True)
def no_ulimit(monkeypatch):
    """No ``ulimit -v`` unless a test sets one: the host's must not decide these tests."""
    monkeypatch.setattr(resource, "getrlimit", lambda which: (resource.RLIM_INFINITY,) * 2)


def fake_proc(tmp_path, cgroup: str, mounts: list[str], mem_available: int = 64 * GiB):
    """A procfs whose meminfo, self/cgroup and self/mountinfo say what a test needs; its
    mount points are under tmp_path (``{root}`` in ``mounts``)."""
    proc = tmp_path / "proc"
    (proc / "self").mkdir(parents=True)
    (proc / "meminfo").write_text(f"MemTotal: {2 * mem_available // 1024} kB\n"
                                  f"MemAvailable: {mem_available // 1024} kB\n")
    (proc / "self" / "cgroup").write_text(cgroup)
    (proc / "self" / "mountinfo").write_text(
        "".join(line.format(root=tmp_path) + "\n" for line in mounts))
    (proc / "self" / "status").write_text(f"VmSize:\t{100 * MiB // 1024} kB\n")
    return proc


def cgroup(directory, **files):
    """A cgroup directory holding ``files`` (memory_max= writes memory.max)."""
    directory.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (directory / name.replace("_", ".", 1)).write_text(f"{text}\n")
    return directory


V1_MOUNT = "35 31 0:32 / {root}/sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory"
V2_MOUNT = "41 31 0:38 / {root}/sys/fs/cgroup rw,relatime - cgroup2 cgroup2 rw"


def test_v2_its_limit_less_its_working_set_without_the_cache_it_may_reclaim(tmp_path):
    proc = fake_proc(tmp_path, "0::/job\n", [V2_MOUNT])
    leaf = cgroup(tmp_path / "sys/fs/cgroup/job", memory_max=450 * MiB,
                  memory_current=300 * MiB, memory_stat=f"anon 90\ninactive_file {200 * MiB}\n"
                  f"active_file {10 * MiB}")
    assert room(proc) == Room(350 * MiB, f"cgroup {leaf}: limit 450.0 MiB")
    assert str(room(proc)) == f"350.0 MiB available (cgroup {leaf}: limit 450.0 MiB)"


def test_v1_counts_its_children_cache_as_its_usage_does(tmp_path):
    proc = fake_proc(tmp_path, "5:devices:/\n4:memory:/slurm/job_12\n3:cpuset:/\n",
                     [V1_MOUNT, "32 31 0:29 / {root}/cpu rw - cgroup cgroup rw,cpu"])
    leaf = cgroup(tmp_path / "sys/fs/cgroup/memory/slurm/job_12",
                  memory_limit_in_bytes=450 * MiB, memory_usage_in_bytes=400 * MiB,
                  memory_stat=f"inactive_file 0\ntotal_inactive_file {300 * MiB}\n")
    assert room(proc) == Room(350 * MiB, f"cgroup {leaf}: limit 450.0 MiB")


def test_a_parents_limit_tighter_than_the_leafs_wins(tmp_path):
    proc = fake_proc(tmp_path, "4:memory:/slurm/job_12/step_0\n", [V1_MOUNT])
    memory = tmp_path / "sys/fs/cgroup/memory"
    cgroup(memory, memory_limit_in_bytes=V1_NO_LIMIT, memory_usage_in_bytes=20 * GiB)
    cgroup(memory / "slurm", memory_limit_in_bytes=V1_NO_LIMIT)
    job = cgroup(memory / "slurm/job_12", memory_limit_in_bytes=450 * MiB,
                 memory_usage_in_bytes=100 * MiB)
    cgroup(memory / "slurm/job_12/step_0", memory_limit_in_bytes=GiB,
           memory_usage_in_bytes=50 * MiB)
    assert room(proc) == Room(350 * MiB, f"cgroup {job}: limit 450.0 MiB")


def test_a_parent_whose_working_set_leaves_less_wins_over_a_lower_limit(tmp_path):
    """Room is what a limit leaves: a looser limit nearly used up leaves the least."""
    proc = fake_proc(tmp_path, "0::/a/b\n", [V2_MOUNT])
    a = cgroup(tmp_path / "sys/fs/cgroup/a", memory_max=GiB, memory_current=900 * MiB)
    cgroup(a / "b", memory_max=500 * MiB, memory_current=100 * MiB)
    assert room(proc) == Room(124 * MiB, f"cgroup {a}: limit 1.0 GiB")


@pytest.mark.parametrize("limit_file,no_limit", [("memory_max", "max"),
                                                 ("memory_limit_in_bytes", V1_NO_LIMIT)])
def test_no_limit_leaves_the_machines_memory_available(tmp_path, limit_file, no_limit):
    proc = fake_proc(tmp_path, "4:memory:/job\n0::/job\n", [V1_MOUNT, V2_MOUNT],
                     mem_available=3 * GiB)
    cgroup(tmp_path / "sys/fs/cgroup/job", **{limit_file: no_limit})
    cgroup(tmp_path / "sys/fs/cgroup/memory/job", **{limit_file: no_limit})
    assert no_limit == "max" or no_limit >= UNLIMITED
    assert room(proc) == Room(3 * GiB, "MemAvailable")
    (proc / "meminfo").unlink()  # no limit is left to read
    assert room(proc) is None


def test_the_machine_wins_when_it_has_less_than_the_cgroup_leaves(tmp_path):
    proc = fake_proc(tmp_path, "0::/job\n", [V2_MOUNT], mem_available=200 * MiB)
    cgroup(tmp_path / "sys/fs/cgroup/job", memory_max=GiB, memory_current=0)
    assert room(proc) == Room(200 * MiB, "MemAvailable")


def test_missing_files_are_ignored(tmp_path):
    """A leaf without a limit file, a cgroup without usage or memory.stat, a hierarchy whose
    directory is absent: the limits that can be read still count."""
    proc = fake_proc(tmp_path, "4:memory:/gone/leaf\n0::/job/leaf\n", [V1_MOUNT, V2_MOUNT])
    job = cgroup(tmp_path / "sys/fs/cgroup/job", memory_max=300 * MiB)
    cgroup(job / "leaf", memory_current=10 * MiB)  # its own limit file is missing
    assert room(proc) == Room(300 * MiB, f"cgroup {job}: limit 300.0 MiB")


def test_a_container_sees_its_own_cgroup_as_the_mounts_root(tmp_path):
    """A container's mount shows the hierarchy from its cgroup down (mountinfo's root
    field); the host's cgroups above it are not there to read."""
    proc = fake_proc(tmp_path, "4:memory:/docker/abc\n", [V1_MOUNT.replace(" / ", " /docker/abc ")])
    mount = cgroup(tmp_path / "sys/fs/cgroup/memory", memory_limit_in_bytes=512 * MiB,
                   memory_usage_in_bytes=12 * MiB)
    assert room(proc) == Room(500 * MiB, f"cgroup {mount}: limit 512.0 MiB")


def test_a_mount_point_with_a_space_is_found(tmp_path):
    proc = fake_proc(tmp_path, "0::/\n", [V2_MOUNT.replace("/sys/fs/cgroup", "/cg\\040v2")])
    mount = cgroup(tmp_path / "cg v2", memory_max=64 * MiB)
    assert room(proc) == Room(64 * MiB, f"cgroup {mount}: limit 64.0 MiB")


def test_ulimit_v_leaves_what_the_process_has_not_mapped(tmp_path, monkeypatch):
    proc = fake_proc(tmp_path, "0::/\n", [V2_MOUNT])  # VmSize: 100 MiB
    monkeypatch.setattr(resource, "getrlimit", lambda which: (GiB, GiB))
    assert room(proc) == Room(GiB - 100 * MiB, "ulimit -v")


def test_nothing_to_read_says_nothing(tmp_path):
    assert room(tmp_path / "no-proc") is None


def test_a_runs_default_budget_is_half_the_room_and_its_note_names_the_limit(tmp_path,
                                                                            monkeypatch, capsys):
    """The trainer, in one process, given 2 MiB of room by a (fake) cgroup: a budget of
    1 MiB, less than its 3.2 MB of rows, so it streams, and says where the 2 MiB came from."""
    from distnn import start
    from distnn.comm import SerialComm
    from distnn.train import main
    from tests.support.synthetic import make_dataset

    data = make_dataset(tmp_path / "d.h5", n_train=4096, n_test=100, shape=(28, 28),
                        n_classes=10)
    left = Room(2 * MiB, "cgroup /sys/fs/cgroup/memory/job_12: limit 450.0 MiB")
    monkeypatch.setattr(start, "room", lambda: left)
    assert main(["--data", str(data), "--layers", "784,16,10", "--epochs", "1",
                 "--partitions", "4", "--window", "64", "--no-progress",
                 "--checkpoint", str(tmp_path / "c.h5")], SerialComm()) == 0
    said = capsys.readouterr()
    assert "which exceed the memory budget (1.0 MiB a rank)" in said.err, said.err
    assert ("distnn: memory budget 1.0 MiB a rank, half of 2.0 MiB available (cgroup "
            "/sys/fs/cgroup/memory/job_12: limit 450.0 MiB)") in said.out, said.out


def test_a_default_budget_too_small_to_stream_says_where_it_came_from(tmp_path, monkeypatch,
                                                                      capsys):
    """No --memory-budget, and a cgroup that leaves 8 KiB: the one line names the budget
    as half of what the cgroup leaves, not a flag the user never gave."""
    from distnn import start
    from distnn.comm import SerialComm
    from distnn.train import main
    from tests.support.synthetic import make_dataset

    data = make_dataset(tmp_path / "d.h5", n_train=4096, n_test=100, shape=(28, 28),
                        n_classes=10)
    left = Room(8 << 10, "cgroup /sys/fs/cgroup/job_12: limit 450.0 MiB")
    monkeypatch.setattr(start, "room", lambda: left)
    assert main(["--data", str(data), "--layers", "784,16,10", "--partitions", "4",
                 "--window", "64", "--checkpoint", str(tmp_path / "c.h5")], SerialComm()) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("distnn.train: error: the memory budget, 4.0 KiB a rank (half of "
                              "8.0 KiB available (cgroup /sys/fs/cgroup/job_12: limit 450.0 "
                              "MiB), shared by 1 rank(s)), is less than a rank needs"), err
