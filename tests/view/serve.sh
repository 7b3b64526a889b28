# tests/view/serve.sh — sourced by the view tests. serve LOG ARGS... starts `magpie view ARGS...
# --port 0` ($B) in the background, stdout in LOG and stderr in LOG.err, adds its pid to PIDS
# (the caller sets PIDS="" before a trap that kills them) and waits, bounded, for the address it
# prints: sets PORT, else prints why and returns 1. VAR=x serve ... passes VAR to magpie view.
serve() {
    log=$1
    shift
    "$B" view "$@" --port 0 >"$log" 2>"$log.err" &
    PIDS="${PIDS:-} $!"
    PORT=""
    for i in $(seq 1 100); do
        PORT=$(sed -n 's|^magpie view: http://127.0.0.1:\([0-9]*\)/$|\1|p' "$log")
        [ -n "$PORT" ] && return 0
        sleep 0.1
    done
    echo "magpie view did not start: $(cat "$log.err")"
    return 1
}
