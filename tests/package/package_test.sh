#!/usr/bin/env bash
# The installed package as another project sees it: `cmake --install` into a fresh prefix, the files a
# consumer needs, no path of the build or source tree inside them, examples/embed configured and built
# against the prefix with find_package(ilre 0.2) and run end to end, a C program through pkg-config, and the
# installed program.  Usage: package_test.sh <build dir> <source dir> <tests/data dir>
set -euo pipefail
build=$(cd "$1" && pwd)
src=$(cd "$2" && pwd)
data=$(cd "$3" && pwd)
work=$(mktemp -d /tmp/ilre-package.XXXXXX)
trap '[ -n "${KEEP:-}" ] || rm -rf "$work"' EXIT
prefix="$work/prefix"
fail() { echo "FAIL $*"; exit 1; }

cmake --install "$build" --prefix "$prefix" > "$work/install.log" || { cat "$work/install.log"; fail "cmake --install"; }
for f in bin/ilre lib/libilre.so include/ilre/engine.h include/ilre/config.h include/ilre/error.h \
         include/ilre/export.h include/ilre/version.h include/ilre/ilre.h include/ilre/openai.h lib/cmake/ilre/ilreConfig.cmake \
         lib/cmake/ilre/ilreConfigVersion.cmake lib/cmake/ilre/ilreTargets.cmake lib/pkgconfig/ilre.pc \
         share/ilre/configs/reference.yaml; do
  [ -e "$prefix/$f" ] || fail "installed file missing: $f"
done
echo "ok   installed files"
if grep -rlF -e "$build" -e "$src" "$prefix/lib/cmake" "$prefix/lib/pkgconfig" "$prefix/include"; then
  fail "a build or source path leaks into the installed package (files above)"
fi
echo "ok   no build or source path in the CMake, pkg-config and header files"

# The example, copied out of the tree so nothing but the prefix can help it.
cp -r "$src/examples/embed" "$work/embed-src"
cmake -S "$work/embed-src" -B "$work/embed-build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_PREFIX_PATH="$prefix" \
  > "$work/embed-configure.log" 2>&1 || { cat "$work/embed-configure.log"; fail "configure examples/embed"; }
cmake --build "$work/embed-build" > "$work/embed-build.log" 2>&1 || { cat "$work/embed-build.log"; fail "build examples/embed"; }
echo "ok   examples/embed builds against find_package(ilre 0.2)"

# find_package(ilre 0.3) must refuse 0.2.x.
mkdir -p "$work/v03"
cat > "$work/v03/CMakeLists.txt" <<'CMAKE'
cmake_minimum_required(VERSION 3.20)
project(v03 LANGUAGES CXX)
find_package(ilre 0.3 CONFIG QUIET)
if(ilre_FOUND)
  message(FATAL_ERROR "ilre 0.3 accepted ${ilre_VERSION}")
endif()
CMAKE
cmake -S "$work/v03" -B "$work/v03/build" -DCMAKE_PREFIX_PATH="$prefix" > "$work/v03.log" 2>&1 || { cat "$work/v03.log"; fail "version check"; }
echo "ok   find_package(ilre 0.3) refuses 0.2"

for i in $(seq 1 150); do
  printf 'Lily went to the park with her mom. Tom had a red ball and a small dog. '
  [ "$i" = 90 ] && printf 'The secret ingredient of the stew is smoked paprika. '
done > "$work/doc.txt"
"$work/embed-build/embed" "$data/models/stories260K-f32.gguf" "$work/doc.txt" "$work/store" \
  prefill.layer=2 prefill.chunk=64 prefill.window=128 prefill.sink=8 recall.budget=128 decode.max_tokens=12 \
  > "$work/embed.out" 2>&1 || { cat "$work/embed.out"; fail "examples/embed run"; }
grep -q "cancelled ask: cancelled" "$work/embed.out" || { cat "$work/embed.out"; fail "embed: no cancellation"; }
grep -q "^stream: .* in 5 parts" "$work/embed.out" || { cat "$work/embed.out"; fail "embed: no stream"; }
grep -q "^openai: {\"choices\":\[{\"finish_reason\"" "$work/embed.out" || { cat "$work/embed.out"; fail "embed: no OpenAI chat completion"; }
echo "ok   examples/embed: ingest, streamed answers, a cancel from another thread, a stream appended while asked"

# A C program through pkg-config, against the C API.
cat > "$work/c_consumer.c" <<'C'
#include <ilre/ilre.h>
#include <stdio.h>
#include <string.h>
int main(void) {
  const char* v = ilre_version();
  printf("%s\n", v);
  return strcmp(v, ILRE_VERSION_STRING) == 0 ? 0 : 1;
}
C
export PKG_CONFIG_PATH="$prefix/lib/pkgconfig"
[ "$(pkg-config --modversion ilre)" = "$(sed -n 's/.*ILRE_VERSION_STRING "\(.*\)"/\1/p' "$prefix/include/ilre/version.h")" ] || fail "pkg-config version"
# shellcheck disable=SC2046
cc -std=c11 -Wall -Wextra -o "$work/c_consumer" "$work/c_consumer.c" $(pkg-config --cflags --libs ilre) || fail "C consumer via pkg-config"
LD_LIBRARY_PATH="$prefix/lib" "$work/c_consumer" > /dev/null || fail "C consumer run"
echo "ok   a C program builds and runs through pkg-config"

# The Python example (ctypes only) against the installed library.
python3 "$src/examples/python/ilre_ctypes.py" --lib "$prefix/lib/libilre.so" "$data/models/stories260K-f32.gguf" \
  "$work/doc.txt" "What is the secret ingredient?" --set prefill.layer=2 --set recall.budget=128 \
  --set decode.max_tokens=8 > "$work/python.out" 2> "$work/python.err" || { cat "$work/python.err"; fail "python example"; }
grep -q '^answer: {' "$work/python.out" || { cat "$work/python.out"; fail "python example printed no answer"; }
echo "ok   examples/python/ilre_ctypes.py answers through the installed libilre.so"

"$prefix/bin/ilre" --version | grep -qE '^ilre [0-9]+\.[0-9]+\.[0-9]+$' || fail "installed ilre --version"
echo "ok   installed ilre --version"
echo "package test passed"
