#!/usr/bin/env bash
# Collects bench/<area>/RESULTS.md into bench/RESULTS.md (no measurement).
set -euo pipefail
cd "$(dirname "$0")"
{
  echo "# Shoal benchmark results"
  echo
  echo "Each section comes from \`bench/<area>/run.sh\`, which runs Shoal and its anchors side by side"
  echo "in one run on this machine (2 vCPUs); compare ratios, not absolute figures (../shared/ANCHORS.md)."
  echo "Collected $(date -u +%Y-%m-%d) by bench/collect.sh."
  for a in crypto overlay mesh raft; do
    if [ -f "$a/RESULTS.md" ]; then
      echo
      sed 's/^# /## /' "$a/RESULTS.md"
    fi
  done
} > RESULTS.md
echo "wrote bench/RESULTS.md"
