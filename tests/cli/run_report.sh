#!/bin/sh
# magpie run's report.html: one self-contained file (every image a data: URI, nothing fetched),
# every slide name and error HTML-escaped (a slide named like markup among them), `magpie report`
# over two run folders; then the page in a real browser: headless Chromium renders it to a
# screenshot that is not blank, its script runs to the end without an error (the body gets
# data-ready), the page is no wider than a 1400 px window, slide names wrap only between their
# parts (after '_', '-', '.', '/'), and sorting by a column reorders the rows. Without a browser that starts, that
# part is skipped with the reason printed.
set -u
T=$(mktemp -d /tmp/mp_run_report.XXXXXX)
trap 'rm -rf "$T"' EXIT
B="$MAGPIE_BIN"
fail=0
no() { echo "FAIL: $*"; fail=1; }

"$B" synth "$T/s" --slides 3 --width 2048 --height 2048 --mpp 0.5 --seed 4 -q || { echo "synth failed"; exit 1; }
"$B" model init --out "$T/r.mpk" --classes 3 --widths 32,32,32,32 >/dev/null &&
"$B" model export "$T/r.mpk" "$T/r.safetensors" >/dev/null &&
"$B" model import "$T/r.safetensors" --out "$T/m.mpk" --mag 1.25 --size 28 --mean 0,0,0 --std 1,1,1 >/dev/null ||
    { echo "model setup failed"; exit 1; }
cd "$T"
# a slide whose name is markup, missing, so its name is in the page twice and in its error
evil='<img src=x onerror=alert(1)>&"q"'
# and one, missing too, whose long name has parts ('_', '-', '.') to wrap between in the slide column
long=a_very-long.slide_name_2026-12-04_scan
printf 'slide,label\ns/synth_000.tiff,Tumor\n"s/%s.tiff",Normal\ns/synth_001.tiff,Normal\ns/%s.tiff,Tumor\n' \
    "$(printf '%s' "$evil" | sed 's/"/""/g')" "$long" >a.csv
printf 'slide,label\ns/synth_002.tiff,Tumor\n' >b.csv
"$B" run a.csv --out "$T/a" --model "$T/m.mpk" -q 2>/dev/null; rc=$?
[ $rc -eq 3 ] || no "run a: exit $rc, want 3"
"$B" run b.csv --out "$T/b" --model "$T/m.mpk" -q || no "run b"
for h in "$T/a/report.html"; do
    [ -s "$h" ] || { no "no $h"; continue; }
    grep -q '<img src=x onerror' "$h" && no "a slide name reached the page unescaped"
    grep -q '&lt;img src=x onerror=alert(1)&gt;&amp;&quot;q&quot;' "$h" || no "the escaped slide name is not in the page"
    # self-contained: images inline, no address to fetch
    grep -Eq '(src|href)="(https?:|//|file:)' "$h" && no "the page fetches something"
    n=$(grep -oE 'src="data:image/(jpeg|png);base64,' "$h" | wc -l)
    [ "$n" -eq 6 ] || no "inline images: $n, want 6 (2 done slides x thumbnail, mask, heatmap)"
done
"$B" report "$T/a" "$T/b" --out "$T/both.html" || no "magpie report over two folders"
grep -c '<tr><td class=n>' "$T/both.html" | grep -qx 5 || no "report over two folders: 5 rows"
# slide names and paths may wrap only after '_', '-', '.' or '/' (a <wbr> there, none elsewhere)
grep -q '<b>synth_<wbr>000</b><div class=path>/<wbr>[^"]*/<wbr>synth_<wbr>000.<wbr>tiff</div>' "$T/both.html" ||
    no "no <wbr> after the separators of synth_000 and its path"
grep -q "<b>a_<wbr>very-<wbr>long.<wbr>slide_<wbr>name_<wbr>2026-<wbr>12-<wbr>04_<wbr>scan</b>" "$T/both.html" ||
    no "no <wbr> after the separators of $long"
grep -o '<td data-v="[^"]*" class=slide>.*</td><td class=[df]' "$T/both.html" | grep -E '[^-_./]<wbr>' >"$T/badwbr"
[ -s "$T/badwbr" ] && no "a <wbr> inside a part of a name: $(head -1 "$T/badwbr")"
"$B" report "$T/a" "$T/b" 2>"$T/e"; [ $? -eq 1 ] || no "report over two folders without --out should exit 1"
"$B" report "$T/s" 2>"$T/e"; [ $? -eq 2 ] || no "report over a folder that is no run should exit 2"
grep -q "^magpie: error: $T/s/status.csv: No such file or directory" "$T/e" || no "report error: $(cat "$T/e")"
cp "$T/a/report.html" "$T/a.html"
"$B" report "$T/a" || no "magpie report DIR"
[ "$(sed 's/[0-9-]*T[0-9:]*Z//g' "$T/a.html")" = "$(sed 's/[0-9-]*T[0-9:]*Z//g' "$T/a/report.html")" ] || no "magpie report DIR differs from the run's own report"

# the page in a browser
browser=""
for b in chromium chromium-browser google-chrome; do command -v $b >/dev/null && { browser=$b; break; }; done
if [ -z "$browser" ]; then
    echo "SKIP browser check: no chromium (apt-get install chromium; tools/install-deps.sh)"
    exit $fail
fi
run_browser() { # URL, then chromium's output options
    url=$1; shift
    HOME="$T" timeout 120 "$browser" --headless --no-sandbox --disable-gpu --no-first-run --hide-scrollbars \
        --user-data-dir="$T/profile" --enable-logging=stderr --v=0 "$@" "$url" 2>>"$T/browser.log"
}
run_browser "file://$T/both.html" --window-size=1400,1200 --screenshot="$T/shot.png" >/dev/null
if [ ! -s "$T/shot.png" ]; then
    echo "SKIP browser check: $browser did not start: $(grep -v dbus "$T/browser.log" | tail -3)"
    exit $fail
fi
grep -E 'CONSOLE|Uncaught' "$T/browser.log" | grep -v dbus >"$T/console"
[ -s "$T/console" ] && no "the page logged to the console: $(cat "$T/console")"
# not blank: dark text and pictures over a light page (libvips' stats: min, max, sum, sum of
# squares, mean, deviation over all bands)
vips stats "$T/shot.png" "$T/stats.csv" || no "vips stats on the screenshot"
awk 'NR == 1 { if (!($1 < 60 && $6 > 15)) { print "min " $1 " deviation " $6; exit 1 } }' "$T/stats.csv" ||
    no "the screenshot is blank"
# the slides' table fits a 1400 px window: no horizontal scrolling (a copy of the page with a
# script that records the document's width once its pictures are laid out)
# (and no slide name is broken inside a part, a run of text between spaces and <wbr>, that would
# fit its cell on one line: the script lists every part laid on several lines though narrower)
cat >"$T/measure.js" <<'EOF'
<script>addEventListener('load',function(){
var split=[],parts=0;document.querySelectorAll('td.slide b').forEach(function(b){
 var w=b.getBoundingClientRect().width;
 b.childNodes.forEach(function(n){if(n.nodeType!==3)return;var re=/\S+/g,m;while((m=re.exec(n.data))){
  var r=document.createRange();r.setStart(n,m.index);r.setEnd(n,m.index+m[0].length);
  parts++;var rs=r.getClientRects(),lines={},wide=0;for(var i=0;i<rs.length;i++){lines[Math.round(rs[i].top)]=1;wide+=rs[i].width;}
  if(Object.keys(lines).length>1&&wide<=w)split.push(m[0]);}});});
document.body.setAttribute('data-split',split.join('|'));document.body.setAttribute('data-parts',parts);
document.body.setAttribute('data-sw',document.documentElement.scrollWidth);
document.body.setAttribute('data-over',Math.round(document.getElementById('slides').getBoundingClientRect().right-document.body.getBoundingClientRect().right))})</script>
EOF
cat "$T/both.html" "$T/measure.js" >"$T/wide.html"
run_browser "file://$T/wide.html" --window-size=1400,1200 --dump-dom >"$T/domw"
sw=$(grep -o 'data-sw="[0-9]*"' "$T/domw" | grep -o '[0-9]*')
[ -n "$sw" ] || no "the page's width was not measured: $(tail -c 300 "$T/domw")"
[ -n "$sw" ] && [ "$sw" -le 1400 ] || no "the page is ${sw:-?} px wide in a 1400 px window (horizontal scrolling)"
# parts: synth_, 000, synth_, 001, synth_, 002, 3 of the markup name, 9 of the long name
grep -q 'data-parts="18"' "$T/domw" || no "name parts measured: $(grep -o 'data-parts="[^"]*"' "$T/domw"), want 18"
# nor does the table reach into the page's right margin
over=$(sed -n 's/.*data-over="\(-\{0,1\}[0-9]*\)".*/\1/p' "$T/domw")
[ -n "$over" ] && [ "$over" -le 0 ] || no "the slides' table passes the body's right edge by ${over:-?} px"
grep -q 'data-split=""' "$T/domw" || no "slide names broken inside a part: $(grep -o 'data-split="[^"]*"' "$T/domw")"
# the error is in the status column, under a failed status
grep -q '<td class=failed data-v="failed">failed<div class=err>' "$T/both.html" || no "no error under the failed status"
# the script ran to its end, and #sort=1 (the slide column) then #sort=6 (patches) reorders
run_browser "file://$T/both.html#sort=1" --dump-dom >"$T/dom1"
grep -q 'data-ready="1"' "$T/dom1" || no "the page's script did not finish: $(tail -c 300 "$T/dom1")"
order() { grep -o '<tr><td class="n">[0-9]*</td><td data-v="[^"]*"' "$1" | sed 's/.*data-v="//; s/"$//' | tr '\n' ' '; }
want="&lt;img src=x onerror=alert(1)&gt;&amp;&quot;q&quot; $long synth_000 synth_001 synth_002 "
[ "$(order "$T/dom1")" = "$want" ] || no "sorted by slide: '$(order "$T/dom1")', want '$want'"
run_browser "file://$T/both.html#sort=6" --dump-dom >"$T/dom6"
first=$(grep -o '<tr><td class="n">[0-9]*</td><td data-v="[^"]*"' "$T/dom6" | head -1 | sed 's/.*data-v="//; s/"$//')
[ "$first" = "&lt;img src=x onerror=alert(1)&gt;&amp;&quot;q&quot;" ] || no "sorted by patches: first '$first', want the failed slide (0)"
exit $fail
