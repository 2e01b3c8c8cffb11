"""Distributed tests, marked mpi: run under mpirun with pytest --with-mpi (tests/run.sh)."""
