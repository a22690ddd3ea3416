import sys

from latentcam.cli import main

sys.exit(main())
