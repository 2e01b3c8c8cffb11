"""Unit tests: serial, in one process, no MPI launch, no root."""
