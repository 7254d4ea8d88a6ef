#!/usr/bin/env sh
# Headless Chromium for the HTML leaderboard test (tests/test_leaderboard_html.py); Debian/Ubuntu, as root.
set -eu
command -v chromium || (apt-get update && apt-get install -y --no-install-recommends chromium)
