import sys

from mailspool.cli.parser import main

sys.exit(main())
