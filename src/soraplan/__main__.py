import sys

from soraplan.cli.main import main

sys.exit(main())
