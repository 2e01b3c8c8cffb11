"""System tests: whole jobs launched as subprocesses (mpirun, launch scripts, Slurm, stand-in hosts)."""
