#!/bin/sh
# Build kage's libFuzzer targets and run each for a set time.
#
#   tests/fuzz/run.sh [TARGET...]       build, then fuzz each target in turn
#   FUZZ_SECONDS=20 tests/fuzz/run.sh   seconds per target (default 60)
#   tests/fuzz/run.sh --build-only      only build build/fuzz/<target>
#   tests/fuzz/run.sh --replay          run every seed once (no fuzzing)
#
# Targets: fuzz_request fuzz_response fuzz_diff fuzz_config fuzz_config_file
# (tests/fuzz/<target>.c). Each links the modules of src/ it exercises,
# compiled with clang -fsanitize=fuzzer,address,undefined into build/fuzz/.
# Seeds are tests/fuzz/corpus/<target>/ (never written to); what a run
# finds goes to build/fuzz/corpus/<target>/, crashes to
# build/fuzz/artifacts/<target>/. For each target the script prints the
# executions and libFuzzer's final coverage (cov: edges, ft: features), and
# exits non-zero when any target crashed, leaked, timed out or ran out of
# memory (the artifact's path and the reproduction command are printed).
#
# Other knobs: FUZZ_CC (clang), FUZZ_JOBS (targets run at once, default 1),
# FUZZ_FLAGS (more libFuzzer flags, e.g. "-jobs=2 -workers=2").
set -eu

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"
OUT=build/fuzz
CC=${FUZZ_CC:-clang}
SECONDS_PER=${FUZZ_SECONDS:-60}
JOBS=${FUZZ_JOBS:-1}
ALL="fuzz_request fuzz_response fuzz_diff fuzz_config fuzz_config_file"

mode=fuzz
targets=""
for a in "$@"; do
	case "$a" in
	--build-only) mode=build ;;
	--replay) mode=replay ;;
	-h|--help) sed -n '2,22p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
	fuzz_*) targets="$targets $a" ;;
	*) echo "run.sh: unknown argument '$a'" >&2; exit 2 ;;
	esac
done
[ -n "$targets" ] || targets=$ALL

if ! command -v "$CC" >/dev/null 2>&1; then
	tools/install-deps --fuzz || { echo "run.sh: $CC is missing: tools/install-deps --fuzz" >&2; exit 1; }
fi

# --- build --------------------------------------------------------------------
SAN="-fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer"
BASE="-std=gnu11 -D_GNU_SOURCE -Isrc -g -O1 $SAN"
if pkg-config --atleast-version=9 libllhttp 2>/dev/null; then
	LLHTTP_CFLAGS="$(pkg-config --cflags libllhttp) -DKAGE_LLHTTP_SYSTEM=1"
	LLHTTP_LIBS=$(pkg-config --libs libllhttp)
	LLHTTP_SRC=""
else
	LLHTTP_CFLAGS="-I/usr/share/include/llhttp -DLLHTTP_STRICT_MODE=1"
	LLHTTP_LIBS=""
	LLHTTP_SRC="/usr/share/llhttp/llhttp.c /usr/share/llhttp/api.c /usr/share/llhttp/http.c"
fi
LIBS="-luring -ljansson -lz -ldl -lm -lpthread $LLHTTP_LIBS"
# kage's own code: its warnings, but a warning only clang gives must not stop
# the fuzzers (src/ belongs to the build with gcc -Werror).
SRC_FLAGS="$BASE $LLHTTP_CFLAGS -fsanitize=fuzzer-no-link -Wall -Wextra -Wno-unused-parameter"
HARNESS_FLAGS="$BASE $LLHTTP_CFLAGS -fsanitize=fuzzer-no-link -Wall -Wextra -Werror -Itests/fuzz"

mkdir -p "$OUT/obj/src" "$OUT/obj/llhttp" "$OUT/obj/fuzz"

# Recompile an object when its source or a header it may include is newer
# (headers are few; no dependency files needed): src/ objects depend on
# src/*.h, harnesses also on tests/fuzz/*.h; all on this script's flags.
newest_header=$(ls -t src/*.h "$0" 2>/dev/null | head -1)
newest_fuzz_header=$(ls -t src/*.h tests/fuzz/*.h "$0" 2>/dev/null | head -1)
compile() { # src obj flags...
	src=$1 obj=$2
	shift 2
	dep=$newest_header
	case "$src" in tests/fuzz/*) dep=$newest_fuzz_header ;; esac
	if [ ! -f "$obj" ] || [ "$src" -nt "$obj" ] || [ "$dep" -nt "$obj" ]; then
		echo "  CC     $src"
		# shellcheck disable=SC2086
		"$CC" "$@" -c -o "$obj" "$src"
	fi
}

objs=""
for src in src/*.c; do
	[ "$src" = src/main.c ] && continue
	obj="$OUT/obj/src/$(basename "$src" .c).o"
	objs="$objs $obj"
done
# Two compilers at a time (the machine is shared).
printf '%s\n' src/*.c | grep -v '^src/main.c$' | while read -r src; do
	echo "$src $OUT/obj/src/$(basename "$src" .c).o"
done | xargs -P 2 -n 2 sh -c '
	src=$1 obj=$2
	if [ ! -f "$obj" ] || [ "$src" -nt "$obj" ] || [ "'"$newest_header"'" -nt "$obj" ]; then
		echo "  CC     $src"
		exec '"$CC"' '"$SRC_FLAGS"' -c -o "$obj" "$src"
	fi' sh
for src in $LLHTTP_SRC; do
	obj="$OUT/obj/llhttp/$(basename "$src" .c).o"
	compile "$src" "$obj" $BASE $LLHTTP_CFLAGS -fsanitize=fuzzer-no-link -w
	objs="$objs $obj"
done
rm -f "$OUT/libkage-fuzz.a"
# shellcheck disable=SC2086
ar rcs "$OUT/libkage-fuzz.a" $objs
# shellcheck disable=SC2086
compile tests/fuzz/fuzz_pool.c "$OUT/obj/fuzz/fuzz_pool.o" $HARNESS_FLAGS

for t in $targets; do
	[ -f "tests/fuzz/$t.c" ] || { echo "run.sh: no tests/fuzz/$t.c" >&2; exit 2; }
	# shellcheck disable=SC2086
	compile "tests/fuzz/$t.c" "$OUT/obj/fuzz/$t.o" $HARNESS_FLAGS
	if [ ! -f "$OUT/$t" ] || [ "$OUT/obj/fuzz/$t.o" -nt "$OUT/$t" ] ||
	   [ "$OUT/libkage-fuzz.a" -nt "$OUT/$t" ]; then
		echo "  LD     $OUT/$t"
		# shellcheck disable=SC2086
		"$CC" $SAN -fsanitize=fuzzer -o "$OUT/$t" "$OUT/obj/fuzz/$t.o" \
			"$OUT/obj/fuzz/fuzz_pool.o" "$OUT/libkage-fuzz.a" $LIBS
	fi
done
[ "$mode" = build ] && exit 0

# --- run ------------------------------------------------------------------------
# Per-target libFuzzer flags: input size bounds and dictionaries.
target_flags() {
	case "$1" in
	fuzz_request|fuzz_response) echo "-max_len=16384 -dict=tests/fuzz/http.dict" ;;
	fuzz_diff) echo "-max_len=16384 -dict=tests/fuzz/json.dict" ;;
	fuzz_config|fuzz_config_file) echo "-max_len=4096 -dict=tests/fuzz/config.dict" ;;
	esac
}

run_one() { # target -> writes $OUT/logs/<target>.log, returns libFuzzer's status
	t=$1
	seeds="tests/fuzz/corpus/$t"
	work="$OUT/corpus/$t"
	art="$OUT/artifacts/$t"
	mkdir -p "$work" "$art" "$OUT/logs" "$seeds"
	log="$OUT/logs/$t.log"
	if [ "$mode" = replay ]; then
		# shellcheck disable=SC2046,SC2086
		"$OUT/$t" $(target_flags "$t") -runs=0 -print_final_stats=1 \
			-artifact_prefix="$art/" "$seeds" >"$log" 2>&1
	else
		# shellcheck disable=SC2046,SC2086
		"$OUT/$t" $(target_flags "$t") -max_total_time="$SECONDS_PER" -timeout=10 \
			-rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix="$art/" \
			${FUZZ_FLAGS:-} "$work" "$seeds" >"$log" 2>&1
	fi
}

summary() { # target status
	t=$1 st=$2 log="$OUT/logs/$1.log"
	execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
	last=$(grep -E '^#[0-9]+' "$log" | grep -E 'cov: ' | tail -1)
	cov=$(echo "$last" | sed -n 's/.* cov: \([0-9]*\).*/\1/p')
	ft=$(echo "$last" | sed -n 's/.* ft: \([0-9]*\).*/\1/p')
	corp=$(echo "$last" | sed -n 's/.* corp: \([^ ]*\).*/\1/p')
	if [ "$st" = 0 ]; then
		verdict=ok
	else
		verdict="FAILED (status $st)"
	fi
	printf '%-18s %-10s execs=%-10s cov=%-6s ft=%-7s corpus=%s\n' "$t" "$verdict" \
		"${execs:-?}" "${cov:-?}" "${ft:-?}" "${corp:-?}"
	if [ "$st" != 0 ]; then
		grep -aE "ERROR: |SUMMARY: |check failed|runtime error" "$log" | head -5 | sed 's/^/    /'
		a=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log" | tail -1)
		if [ -n "$a" ]; then
			echo "    artifact: $a"
			echo "    reproduce: $OUT/$t $a"
			echo "    minimise:  $OUT/$t -minimize_crash=1 -runs=100000 $a"
		fi
		echo "    log: $log"
	fi
}

failed=0
if [ "$mode" = replay ]; then
	echo "replaying the seed corpora"
else
	echo "fuzzing each target for ${SECONDS_PER}s"
fi
set -- $targets
while [ $# -gt 0 ]; do
	batch=""
	i=0
	while [ $# -gt 0 ] && [ $i -lt "$JOBS" ]; do
		batch="$batch $1"
		shift
		i=$((i + 1))
	done
	pids=""
	for t in $batch; do
		( set +e; run_one "$t"; echo $? >"$OUT/logs/$t.status" ) &
		pids="$pids $!"
	done
	# shellcheck disable=SC2086
	wait $pids
	for t in $batch; do
		st=$(cat "$OUT/logs/$t.status")
		summary "$t" "$st"
		[ "$st" = 0 ] || failed=1
	done
done
exit $failed
