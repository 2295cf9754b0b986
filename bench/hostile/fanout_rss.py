#!/usr/bin/env python3
"""bench/hostile/fanout_rss.py: server RSS when one large message goes to many
broadcast subscribers (issue 10 item 1). See memory_rss.py.

Usage: bench/hostile/fanout_rss.py BINARY [-n 300] [--size 4194304] [--stall] [--tls]
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import memory_rss  # noqa: E402

sys.argv.insert(1, "fanout")
memory_rss.main()
