# Sourced by the benchmark scripts: writes one benchmark's section into docs/benchmarks.md.
#
#   write_section DOC SECTION BEGIN_MARK END_MARK
#
# The section (the file SECTION, which starts with BEGIN_MARK and ends with END_MARK) replaces
# the lines from BEGIN_MARK to END_MARK of DOC in place, or is appended below the "other
# benchmarks" marker that scripts/bench/collect.sh keeps when it rewrites the file.
write_section() {
  local doc=$1 section=$2 begin=$3 end=$4 marker out
  marker='<!-- other benchmarks: kept when scripts/bench/collect.sh rewrites this file -->'
  out=$(mktemp)
  [[ -f $doc ]] || : >"$doc"
  grep -qF "$marker" "$doc" || printf '\n%s\n' "$marker" >>"$doc"
  if grep -qF "$begin" "$doc"; then
    awk -v b="$begin" -v e="$end" -v f="$section" '
      $0 == b { while ((getline line < f) > 0) print line; skip = 1; next }
      skip && $0 == e { skip = 0; next }
      !skip { print }
    ' "$doc" >"$out"
  else
    { cat "$doc"; echo; cat "$section"; } >"$out"
  fi
  cat "$out" >"$doc"
  rm -f "$out"
}
