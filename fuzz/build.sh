#!/usr/bin/env bash
# Builds the libFuzzer targets in fuzz/targets/*.swift into .build-fuzz/<name>.
#
# RunfeedCore (Sources/RunfeedCore/*.swift) is compiled once, instrumented with
# -sanitize=fuzzer,address, into a static library + module; each target links against it.
# Needs the Swift toolchain's libclang_rt.fuzzer (Swift on Linux ships it) and libcrypto (libssl-dev).
#
#   bash fuzz/build.sh            build all targets (incremental: skipped when up to date)
#   bash fuzz/build.sh NAME...    build only these targets
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x /opt/swift/usr/bin/swiftc ] && export PATH="/opt/swift/usr/bin:$PATH"
SWIFTC="${SWIFTC:-swiftc}"
OUT="${FUZZ_BUILD_DIR:-.build-fuzz}"
OPT="${FUZZ_OPT:--O}"
FLAGS=(-sanitize=fuzzer,address -parse-as-library "$OPT" -g -use-ld=lld -swift-version 6 -I Sources/CCrypto)
mkdir -p "$OUT"

core_srcs=(Sources/RunfeedCore/*.swift)
lib="$OUT/libRunfeedCore.a"
newer() {  # newer OUTPUT INPUT... : true when OUTPUT is missing or older than any INPUT (or this script)
    local o=$1; shift
    [ -e "$o" ] || return 0
    for f in "$@" "$0"; do [ "$f" -nt "$o" ] && return 0; done
    return 1
}
if newer "$lib" "${core_srcs[@]}"; then
    echo "fuzz/build.sh: RunfeedCore (${#core_srcs[@]} files, $OPT, fuzzer+address)" >&2
    "$SWIFTC" "${FLAGS[@]}" -enable-testing -module-name RunfeedCore -emit-module -emit-module-path "$OUT/RunfeedCore.swiftmodule" \
        -static -emit-library -o "$lib" "${core_srcs[@]}"
fi

if [ $# -gt 0 ]; then names=("$@"); else
    names=(); for f in fuzz/targets/*.swift; do names+=("$(basename "$f" .swift)"); done
fi
for n in "${names[@]}"; do
    src="fuzz/targets/$n.swift"
    [ -f "$src" ] || { echo "fuzz/build.sh: no such target: $src" >&2; exit 2; }
    if newer "$OUT/$n" "$src" "$lib"; then
        echo "fuzz/build.sh: $n" >&2
        "$SWIFTC" "${FLAGS[@]}" -module-name "fuzz_$n" -I "$OUT" "$src" "$lib" -lcrypto -o "$OUT/$n"
    fi
done
