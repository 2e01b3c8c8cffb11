"""System tests: whole jobs as subprocesses (mpirun, launch scripts, Slurm, stand-in hosts)."""
