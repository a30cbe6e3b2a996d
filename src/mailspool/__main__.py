import sys

from mailspool.cli import main

sys.exit(main())
