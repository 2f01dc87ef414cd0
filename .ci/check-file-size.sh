#!/usr/bin/env bash
# Fails if a non-test source file passes STYLE.md's hard limit of 1,000 lines.
set -euo pipefail
cd "$(dirname "$0")/.."
find src -name '*.rs' ! -name 'tests.rs' ! -path '*/tests/*' -print0 \
    | xargs -0 wc -l \
    | awk '$2 != "total" && $1 > 1000 { print "too long (split it): " $2 ": " $1 " lines"; bad = 1 } END { exit bad }'
