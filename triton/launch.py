#!/usr/bin/env python3
"""Start the embedded tritonserver on model_repository/ (same as `python -m voicebot.serving`).

Options: --profile cpu|gpu, --instances MODEL=KIND:COUNT, --host, --http-port, ...
See `python triton/launch.py --help`.
"""

import sys

from voicebot.serving.__main__ import main

if __name__ == "__main__":
    sys.exit(main())
