"""The ``gpufinops`` console command."""
