#!/usr/bin/env bash
# The browser of the UI tests (tests/ui): Debian's Chromium, driven by Playwright.
# Playwright cannot download its own browser build here, so the tests point it at
# /usr/bin/chromium. Inter is the first font the pages ask for, so that the screenshots the
# tests write look as designed. Run as root; safe to run again.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
if ! command -v chromium >/dev/null 2>&1 || ! dpkg -s fonts-inter >/dev/null 2>&1; then
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core fonts-inter \
        >/dev/null
fi
if ! python3 -c 'import playwright' >/dev/null 2>&1; then
    python3 -m pip install -q --disable-pip-version-check --root-user-action=ignore \
        'playwright>=1.40'
fi
