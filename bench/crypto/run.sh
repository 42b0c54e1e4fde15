#!/usr/bin/env bash
# AES-GCM on one core: Shoal's in-place seal (OpenSSL EVP, reused context) and its full ESP
# seal/open, side by side with `openssl speed -evp` in the same run, both pinned to CPU 1.
# Writes bench/crypto/RESULTS.md. Usage: bench/crypto/run.sh [seconds per measurement]
set -euo pipefail
cd "$(dirname "$0")/../.."
secs=${1:-3}
swift build -c release --product shoal >/dev/null
bin=.build/release/shoal
out=bench/crypto/RESULTS.md
{
  echo "# AES-GCM, one core (CPU 1), $(date -u +%Y-%m-%d)"
  echo
  echo "Target: Shoal's AEAD ≥ 0.8× \`openssl speed -evp\` at the same size. Median of 3 runs each."
  echo
  echo "| cipher | bytes | openssl GB/s | Shoal raw seal GB/s | ratio | Shoal ESP seal GB/s | ratio | ESP seal+open GB/s |"
  echo "|---|---|---|---|---|---|---|---|"
} > "$out"
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
for cipher in aes-128-gcm aes-256-gcm; do
  for size in 1408 8192; do
    o=(); r=(); e=(); so=()
    for _ in 1 2 3; do
      # openssl prints k-bytes per second in its last line's last column.
      o+=("$(taskset -c 1 openssl speed -evp "$cipher" -bytes "$size" -seconds "$secs" 2>/dev/null | tail -1 | awk '{gsub("k","",$NF); printf "%.3f", $NF*1000/1e9}')")
      line=$(taskset -c 1 "$bin" bench aead --cipher "$cipher" --size "$size" --seconds "$secs" --json)
      r+=("$(echo "$line" | sed -E 's/.*"rawSealGBps":([0-9.]+).*/\1/')")
      e+=("$(echo "$line" | sed -E 's/.*"espSealGBps":([0-9.]+).*/\1/')")
      so+=("$(echo "$line" | sed -E 's/.*"espSealOpenGBps":([0-9.]+).*/\1/')")
    done
    om=$(printf '%s\n' "${o[@]}" | median); rm_=$(printf '%s\n' "${r[@]}" | median)
    em=$(printf '%s\n' "${e[@]}" | median); sm=$(printf '%s\n' "${so[@]}" | median)
    printf '| %s | %s | %s | %s | %.2f× | %s | %.2f× | %s |\n' "$cipher" "$size" "$om" "$rm_" \
      "$(echo "$rm_ / $om" | bc -l)" "$em" "$(echo "$em / $om" | bc -l)" "$sm" >> "$out"
  done
done
echo >> "$out"
echo "ESP seal = inner UDP header, padding, ESP header and IV written in place, then AES-GCM with the 12-byte ESN AAD; its GB/s counts the VXLAN packet's bytes. ESP seal+open = one seal and one open (replay check, ICV, trailer) per packet on the same core: half of it per direction." >> "$out"
cat "$out"
