#!/bin/sh
# Curation CLI (issue 12): exact option names, unknown split names, --help on every db
# subcommand, usage errors exit 1 before any work, and errors that name the fix.
set -u
T=$(mktemp -d /tmp/mp_curate_XXXXXX)
trap 'rm -rf "$T"' EXIT
fail=0
ok() { if ! eval "$2"; then echo "FAIL: $1"; fail=1; fi; }
M="$MAGPIE_BIN"

# --mag is not --mags: refused with a hint, rc 1, and no dataset is created
"$M" tile "$T/d.db" --mag 10 "$T/none.svs" 2> "$T/err"; rc=$?
ok "tile --mag refused" '[ $rc -eq 1 ] && [ "$(cat "$T/err")" = "magpie: error: tile: unknown option '"'"'--mag'"'"' (did you mean '"'"'--mags'"'"'?) (see magpie tile --help)" ]'
ok "tile --mag created nothing" '[ ! -e "$T/d.db" ]'
"$M" tile "$T/d.db" --dry "$T/none.svs" 2> "$T/err"; rc=$?
ok "tile --dry refused" '[ $rc -eq 1 ] && grep -q "unknown option .--dry. (did you mean .--dry-run.?)" "$T/err"'
"$M" infer x.mpk y.svs --out "$T/o" --thread 2 2> "$T/err"; rc=$?
ok "infer --thread refused" '[ $rc -eq 1 ] && grep -q "unknown option .--thread. (did you mean .--threads.?)" "$T/err"'
"$M" synth "$T/s" --slide 2 2> "$T/err"; rc=$?
ok "synth --slide refused" '[ $rc -eq 1 ] && grep -q "unknown option .--slide. (did you mean .--slides.?)" "$T/err" && [ ! -e "$T/s" ]'

# unknown split names: rc 1 with the known ones, before the checkpoint is read
"$M" eval "$T/d.db" "$T/none.mpk" --split testing 2> "$T/err"; rc=$?
ok "eval unknown split" '[ $rc -eq 1 ] && [ "$(cat "$T/err")" = "magpie: error: eval: unknown split '"'"'testing'"'"' (known: train, val, test, unlabeled)" ]'

# --help on every db subcommand, even with a dataset that does not exist: rc 0, its own usage
for sub in info slides stats check mask vacuum splits; do
    "$M" db "$T/nope.db" $sub --help > "$T/h" 2> "$T/err"; rc=$?
    ok "db $sub --help" '[ $rc -eq 0 ] && head -1 "$T/h" | grep -q "^usage: magpie db DB $sub" && [ ! -s "$T/err" ]'
done
for sub in "labels import" "labels list" "labels remove" "slides remove" "split"; do
    "$M" db "$T/nope.db" $sub --help > "$T/h" 2> "$T/err"; rc=$?
    ok "db $sub --help" '[ $rc -eq 0 ] && grep -q "^usage: magpie db DB $sub" "$T/h" && [ ! -s "$T/err" ]'
done
"$M" db "$T/nope.db" --help > "$T/h"; rc=$?
ok "db DB --help" '[ $rc -eq 0 ] && grep -q "^usage: magpie db DB COMMAND" "$T/h"'
ok "no dataset created by --help" '[ ! -e "$T/nope.db" ]'
# usage errors: rc 1 and nothing opened or created
"$M" db "$T/nope.db" info --frob 2> "$T/err"; rc=$?
ok "db info --frob" '[ $rc -eq 1 ] && [ "$(cat "$T/err")" = "magpie: error: db info: unknown option '"'"'--frob'"'"' (see magpie db DB info --help)" ]'
"$M" db "$T/nope.db" mask onlyone 2> "$T/err"; rc=$?
ok "db mask one arg" '[ $rc -eq 1 ]'
"$M" db "$T/nope.db" labels import 2> "$T/err"; rc=$?
ok "labels import without files" '[ $rc -eq 1 ]'
"$M" db "$T/nope.db" split --ratios 0.5,0.5 2> "$T/err"; rc=$?
ok "split two ratios" '[ $rc -eq 1 ] && [ ! -e "$T/nope.db" ]'
exit $fail
