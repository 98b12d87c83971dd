#!/bin/sh
# Assembles the runtime root file system of the Junction image: the binary, the
# shared libraries it links (with the dynamic loader), /data owned by the non-root
# user 65532, and the passwd and group entries for that user.
#
#     deploy/rootfs.sh BINARY OUT_DIR
#
# deploy/Dockerfile runs it in its build stage; scripts/validate-deploy runs it on
# the release binary to build the same runtime image without a registry.
set -eu
bin=$1
out=$2
mkdir -p "$out/data" "$out/etc" "$out/tmp"
cp "$bin" "$out/junction"
# Every absolute path ldd names: the libraries (libc, libm, libgcc_s, ...) and the
# loader itself, copied to the same paths with symbolic links resolved.
ldd "$bin" | grep -o '/[^ ]*' | sort -u | while read -r lib; do
  mkdir -p "$out$(dirname "$lib")"
  cp -L "$lib" "$out$lib"
done
printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/data:/sbin/nologin\n' >"$out/etc/passwd"
printf 'root:x:0:\nnonroot:x:65532:\n' >"$out/etc/group"
chown 65532:65532 "$out/data"
chmod 0750 "$out/data"
chmod 1777 "$out/tmp"
