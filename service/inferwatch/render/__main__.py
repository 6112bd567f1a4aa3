import sys

from inferwatch.render.committed import main

sys.exit(main())
