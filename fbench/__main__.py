import sys

from fbench.cli import main

sys.exit(main())
