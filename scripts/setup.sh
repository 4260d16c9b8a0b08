# Sourced by the scripts beside it: installs the build tools senet needs on a fresh Debian
# machine (cmake and nasm build libjpeg-turbo from source; plus the Debian packages given as
# arguments), then builds senet in release mode and sets $senet to the binary.
need=()
command -v cmake >/dev/null || need+=(cmake)
command -v nasm >/dev/null || need+=(nasm)
for pkg in "$@"; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
cargo build --release
senet=target/release/senet
