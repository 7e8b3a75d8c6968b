# Sourced by the bench scripts: starts a tracevault server in the background.
#   serve_bg BIN DATA PORT LOG
# Applies CONFIG=FILE (`--config`) when set, kills the server when the script
# exits, waits until it listens, and leaves its pid in SP.
serve_bg() {
  "$1" serve --data "$2" --listen "127.0.0.1:$3" ${CONFIG:+--config "$CONFIG"} > "$4" 2>&1 &
  SP=$!
  trap 'kill $SP 2>/dev/null || true' EXIT
  for _ in $(seq 300); do grep -q "listening on" "$4" && return 0; sleep 0.1; done
  echo "the server did not start; see $4" >&2
  return 1
}

# CPU seconds (user + system) the process PID has used so far.
cpu_secs() {
  awk -v hz="$(getconf CLK_TCK)" '{ printf "%.2f", ($14 + $15) / hz }' "/proc/$1/stat"
}
