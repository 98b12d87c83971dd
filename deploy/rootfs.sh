#!/bin/sh
# Assembles the runtime file system of the Junction image in two trees:
#
#   OUT_DIR/system/  the binary (/junction, debug sections stripped), the shared libraries it links and the
#                    dynamic loader, /etc/passwd and /etc/group with the non-root
#                    user 65532, and /tmp; owned by root in the image;
#   OUT_DIR/state/   data/, the data directory, which the image copies with
#                    --chown=65532:65532 (COPY never keeps ownership).
#
#     deploy/rootfs.sh BINARY OUT_DIR
#
# deploy/Dockerfile runs it in its build stage; scripts/validate-deploy runs it on
# a built binary to build the same runtime stage without a registry.
set -eu
bin=$1
out=$2
sys="$out/system"
mkdir -p "$sys/etc" "$sys/tmp" "$out/state/data"
# Debug sections out (line tables: 130 MB of a 160 MB release binary); symbols stay,
# so a panic's backtrace still names its functions.
strip --strip-debug -o "$sys/junction" "$bin"
# Every absolute path ldd names: the libraries (libc, libm, libgcc_s, ...) and the
# loader itself, copied to the same paths with symbolic links resolved.
ldd "$bin" | grep -o '/[^ ]*' | sort -u | while read -r lib; do
  mkdir -p "$sys$(dirname "$lib")"
  cp -L "$lib" "$sys$lib"
done
printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/data:/sbin/nologin\n' >"$sys/etc/passwd"
printf 'root:x:0:\nnonroot:x:65532:\n' >"$sys/etc/group"
chmod 1777 "$sys/tmp"
chmod 0750 "$out/state/data"
