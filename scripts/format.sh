#!/usr/bin/env bash
# Formats every Swift file in place per .swift-format; FormatTests fails on anything left over.
set -euo pipefail
cd "$(dirname "$0")/.."
swift format format --in-place --recursive --parallel --configuration .swift-format Sources Tests Package.swift
[ -d bench/micro ] && swift format format --in-place --recursive --configuration .swift-format bench/micro || true
[ -d Fuzz ] && swift format format --in-place --recursive --configuration .swift-format Fuzz || true
