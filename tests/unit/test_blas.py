"""The BLAS line and its warning: the kernels OpenBLAS runs against the CPU's best."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from distnn import blas

OPENBLAS = {"user_api": "blas", "internal_api": "openblas", "version": "0.3.31",
            "threading_layer": "pthreads", "num_threads": 1}
AVX512 = {"avx", "avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512dq"}


@pytest.mark.parametrize("flags,level", [(AVX512, 4), ({"avx", "avx2", "fma"}, 3),
                                         ({"avx", "avx512f"}, 2), ({"sse2"}, 1), (set(), None)])
def test_the_cpus_widest_vectors_from_its_flags(flags, level):
    assert blas.cpu_level(flags) == level


def test_the_line_names_library_kernels_and_threads():
    libs = [{**OPENBLAS, "architecture": "Haswell"}]
    assert blas.describe(libs) == "OpenBLAS 0.3.31 (Haswell kernels, pthreads), 1 thread"
    assert blas.describe(libs, threads=False) == "OpenBLAS 0.3.31 (Haswell kernels, pthreads)"
    mkl = {"user_api": "blas", "internal_api": "mkl", "version": "2024.2", "num_threads": 4,
           "threading_layer": "intel"}
    assert blas.describe([mkl]) == "MKL 2024.2 (intel), 4 threads"


@pytest.mark.parametrize("kernel,level,environ,words", [
    ("Haswell", 4, {"OPENBLAS_CORETYPE": "Haswell", "OPENBLAS_L2_SIZE": "512"},
     "OpenBLAS runs its Haswell (AVX2) kernels on a CPU with AVX-512, because "
     "OPENBLAS_CORETYPE=Haswell forces them: matrix products may run at half speed; unset "
     "OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE for the CPU's own kernels"),
    ("Sandybridge", 3, {"OPENBLAS_CORETYPE": "Sandybridge"}, "unset OPENBLAS_CORETYPE for"),
    ("Haswell", 4, {}, "this OpenBLAS has none of the CPU's own"),
    ("SkylakeX", 4, {"OPENBLAS_CORETYPE": "SkylakeX"}, None),  # the CPU's own, if forced
    ("Haswell", 3, {"OPENBLAS_CORETYPE": "Haswell"}, None),  # an AVX2 CPU's best
    ("neoversen1", 4, {}, None),  # not x86: no judgement
])
def test_a_warning_exactly_when_the_kernels_are_older_than_the_cpu(kernel, level, environ,
                                                                   words):
    line = blas.kernel_warning([{**OPENBLAS, "architecture": kernel}], level, environ)
    assert (line is None) if words is None else (words in line), line


def test_a_run_names_its_blas_and_warns_as_this_machine_says(tmp_path):
    """This machine's own BLAS and environment, unchanged: the line, and the warning
    where the kernels threadpoolctl names are older than /proc/cpuinfo's flags allow."""
    from tests.support.fresh_blas import fresh_blas
    from tests.support.synthetic import make_dataset

    make_dataset(tmp_path / "d.h5")
    done = subprocess.run([sys.executable, "-m", "distnn.train", "--data", str(tmp_path / "d.h5"),
                           "--layers", "16,8,4", "--epochs", "1", "--checkpoint",
                           str(tmp_path / "c.h5"), "--no-progress"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    here = fresh_blas()  # as the run sees it (this process may hold scipy's BLAS too)
    assert f"distnn: BLAS: {here['line']}" in done.stdout
    arch = here["architectures"]
    cpuinfo = Path("/proc/cpuinfo")
    words = cpuinfo.read_text().split() if cpuinfo.exists() else []
    older = any(a.lower() in ("haswell", "zen", "sandybridge") for a in arch) and \
        "avx512f" in words
    assert ("kernels on a CPU with" in done.stderr) == older, done.stderr
