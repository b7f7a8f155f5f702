import sys

from gpufinops.cli.main import main

sys.exit(main())
