#!/usr/bin/env python3
"""bench/hostile/partial_rss.py: server RSS when many connections each hold an
unfinished large message (issue 10 item 3). See memory_rss.py.

Usage: bench/hostile/partial_rss.py BINARY [-n 1000] [--size 4194304] [-- EXTRA WSSD ARGS]
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import memory_rss  # noqa: E402

sys.argv.insert(1, "partial")
memory_rss.main()
