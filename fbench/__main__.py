from fbench.cli import main
import sys

sys.exit(main())
