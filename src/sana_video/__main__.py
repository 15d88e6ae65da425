import sys

from sana_video.cli import main

sys.exit(main())
